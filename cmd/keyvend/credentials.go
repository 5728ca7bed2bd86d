package main

// keyvend credentials (the credential_process helper) and keyvend profile
// (the ~/.aws/config profile that runs it).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/credential"
)

const (
	credentialsSynopsis = "credentials --secret <arn-or-name>"
	profileSynopsis     = "profile <user> [--name PROFILE] [--config PATH]"
)

// credentials prints the key in a keyvend secret as credential_process
// output with an Expiration credential.Lifetime ahead. It reads the secret
// with the default AWS credential chain, in the region of the secret's ARN.
func credentials(ctx context.Context, args []string, stdout io.Writer) error {
	fset := flag.NewFlagSet("credentials", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	secret := fset.String("secret", "", "the user's secret: its ARN (the region is read from it) or name")
	if _, err := parse(fset, args, 0, 0, credentialsSynopsis); err != nil {
		return err
	}
	if *secret == "" {
		return usagef("credentials: --secret is required\nusage: keyvend %s", credentialsSynopsis)
	}
	var opts []func(*config.LoadOptions) error
	if a, err := arn.Parse(*secret); err == nil && a.Region != "" {
		opts = append(opts, config.WithRegion(a.Region))
	}
	cfg, err := awsclient.Load(ctx, opts...)
	if err != nil {
		return err
	}
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: secret})
	if err != nil {
		return fmt.Errorf("read secret %s: %w", *secret, err)
	}
	c, ok := credential.Parse(aws.ToString(out.SecretString))
	if !ok {
		return fmt.Errorf("secret %s holds no access key (not keyvend's credential JSON)", *secret)
	}
	_, err = fmt.Fprintln(stdout, c.ProcessJSON(time.Now().Add(credential.Lifetime)))
	return err
}

// profile writes the [profile NAME] section of the AWS config file:
// credential_process runs this binary's credentials helper on the user's
// secret, region is the secret's. Other sections and other keys of the
// section stay as they are.
func profile(ctx context.Context, args []string, stdout io.Writer) error {
	fset, g := newFlags("profile", stdout)
	name := fset.String("name", "", "the profile's name (default: the user's)")
	path := fset.String("config", "", "the AWS config file (default $AWS_CONFIG_FILE, else ~/.aws/config)")
	pos, err := parse(fset, args, 1, 1, profileSynopsis)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = pos[0]
	}
	if strings.ContainsAny(*name, "[]\r\n") || strings.TrimSpace(*name) != *name {
		return usagef("profile: --name %q cannot be a profile name", *name)
	}
	file, err := configPath(*path)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate the keyvend binary: %w", err)
	}
	if self, err = filepath.Abs(self); err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	d, _, err := c.Describe(ctx, pos[0])
	if err != nil {
		return err
	}
	if d.SecretARN == "" {
		return fmt.Errorf("user %s has no secret (complete: %t): nothing to read its key from", d.User, d.Complete)
	}
	a, err := arn.Parse(d.SecretARN)
	if err != nil {
		return fmt.Errorf("the API answered secret %q, not an ARN", d.SecretARN)
	}
	process := quoteArg(self) + " credentials --secret " + d.SecretARN
	settings := [][2]string{{"credential_process", process}, {"region", a.Region}}
	if err := writeProfile(file, *name, settings); err != nil {
		return err
	}
	if g.json {
		return printJSON(stdout, map[string]string{"profile": *name, "config": file, "credential_process": process, "region": a.Region})
	}
	fmt.Fprintf(stdout, "profile %s in %s:\n  credential_process = %s\n  region = %s\ntry: aws sts get-caller-identity --profile %s\n", *name, file, process, a.Region, *name)
	return nil
}

// configPath is the AWS config file: flag, AWS_CONFIG_FILE, ~/.aws/config.
func configPath(flagged string) (string, error) {
	p := flagged
	if p == "" {
		p = os.Getenv("AWS_CONFIG_FILE")
	}
	if p == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --config, no AWS_CONFIG_FILE and no home directory: %w", err)
		}
		p = filepath.Join(home, ".aws", "config")
	}
	return filepath.Abs(p)
}

// quoteArg quotes a path with spaces for credential_process, which the
// AWS CLI and SDKs split like a shell.
func quoteArg(s string) string {
	if strings.ContainsAny(s, " \t\"'") {
		return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	return s
}

// writeProfile sets keys in a profile of the config file at path (created
// with its directory if missing) through a temporary file and a rename;
// the file is left with mode 0600.
func writeProfile(path, name string, settings [][2]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".keyvend-config-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if _, err := tmp.WriteString(setProfile(string(old), name, settings)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// setProfile returns config with the profile's settings set: in place in
// an existing section (a key's continuation lines replaced with it, a
// repeated key dropped), missing ones appended to the section, a missing
// section appended to the file. Everything else is kept byte for byte.
func setProfile(config, name string, settings [][2]string) string {
	header := "profile " + name
	if name == "default" {
		header = "default"
	}
	lines := strings.SplitAfter(config, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out []string
	in, found, skipping := false, false, false
	done := map[string]bool{}
	appendMissing := func() {
		// before the section's trailing blank lines
		end := len(out)
		for end > 0 && strings.TrimSpace(out[end-1]) == "" {
			end--
		}
		var add []string
		for _, kv := range settings {
			if !done[kv[0]] {
				add = append(add, kv[0]+" = "+kv[1]+"\n")
				done[kv[0]] = true
			}
		}
		if end > 0 && !strings.HasSuffix(out[end-1], "\n") {
			out[end-1] += "\n"
		}
		out = append(out[:end], append(add, out[end:]...)...)
	}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			if in {
				appendMissing()
			}
			in = sectionName(t) == header
			found = found || in
			skipping = false
			out = append(out, l)
			continue
		}
		if skipping && t != "" && (l[0] == ' ' || l[0] == '\t') {
			continue // a continuation line of a key being replaced
		}
		skipping = false
		if in && t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, ";") {
			key, _, _ := strings.Cut(t, "=")
			key = strings.TrimSpace(key)
			for _, kv := range settings {
				if kv[0] != key {
					continue
				}
				skipping = true
				if !done[key] {
					out = append(out, kv[0]+" = "+kv[1]+"\n")
					done[key] = true
				}
				break
			}
			if skipping {
				continue
			}
		}
		out = append(out, l)
	}
	if in {
		appendMissing()
	}
	if !found {
		if n := len(out); n > 0 {
			if !strings.HasSuffix(out[n-1], "\n") {
				out[n-1] += "\n"
			}
			if strings.TrimSpace(out[n-1]) != "" {
				out = append(out, "\n")
			}
		}
		out = append(out, "["+header+"]\n")
		for _, kv := range settings {
			out = append(out, kv[0]+" = "+kv[1]+"\n")
		}
	}
	return strings.Join(out, "")
}

// sectionName is a section header's name with its spaces normalized:
// "[ profile  x ]" is "profile x".
func sectionName(header string) string {
	h := strings.TrimSpace(header)
	h = strings.TrimPrefix(h, "[")
	if i := strings.Index(h, "]"); i >= 0 {
		h = h[:i]
	}
	return strings.Join(strings.Fields(h), " ")
}
