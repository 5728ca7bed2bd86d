package main

// The client half of keyvend: the verbs that call keyvend's API
// (pkg/client), their shared flags, argument order, output and exit codes.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/keyvend/keyvend/pkg/client"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Exit codes a CI job can branch on (keyvend --help lists them).
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitForbidden = 3 // 401, 403
	exitNotFound  = 4 // 404
	exitConflict  = 5 // 409, 412
)

// usageError is a command line keyvend cannot run: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// helpRequested is a verb's -h or --help: its text goes to stdout, exit 0.
type helpRequested string

func (h helpRequested) Error() string { return string(h) }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitCode maps err to the process's exit code.
func exitCode(err error) int {
	var p *client.Problem
	var u usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.As(err, &p):
		switch p.Status {
		case 401, 403:
			return exitForbidden
		case 404:
			return exitNotFound
		case 409, 412:
			return exitConflict
		}
	}
	return exitError
}

// globals are the flags every API verb takes.
type globals struct {
	api, stack, token string
	json              bool
	stdout            io.Writer
}

// newFlags is a verb's flag set with the API flags.
func newFlags(name string, stdout io.Writer) (*flag.FlagSet, *globals) {
	g := &globals{stdout: stdout}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports the error itself
	fs.StringVar(&g.api, "api", "", "keyvend's API URL (default $KEYVEND_API, else the stack's, else "+client.DefaultAPI+")")
	fs.StringVar(&g.stack, "stack", "", "read the API URL from this CloudFormation stack's ApiUrl output (default $KEYVEND_STACK)")
	fs.StringVar(&g.token, "token", "", "send Authorization: Bearer TOKEN instead of signing (default $KEYVEND_TOKEN)")
	fs.BoolVar(&g.json, "json", false, "print the API's JSON instead of a table")
	return fs, g
}

// connect parses args (parse) and makes the client for a verb that has
// nothing more to check before calling the API.
func (g *globals) connect(ctx context.Context, fs *flag.FlagSet, args []string, min, max int, synopsis string) (*client.Client, []string, error) {
	pos, err := parse(fs, args, min, max, synopsis)
	if err != nil {
		return nil, nil, err
	}
	c, err := g.client(ctx)
	return c, pos, err
}

// parse parses args with flags before, between or after the positional
// arguments (the flag package alone stops at the first non-flag), and
// checks their number: at least min, at most max (-1: any).
func parse(fs *flag.FlagSet, args []string, min, max int, synopsis string) ([]string, error) {
	flags, pos := reorder(fs, args)
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, helpRequested("usage: keyvend " + synopsis + "\nflags:\n" + flagHelp(fs))
		}
		return nil, usagef("%v\nusage: keyvend %s", err, synopsis)
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, usagef("usage: keyvend %s", synopsis)
	}
	return pos, nil
}

// reorder splits args into flags (with the values of flags that take
// one) and positional arguments. "--" ends the flags; "-" is positional.
func reorder(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil { // Parse reports it
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return flags, pos
}

func flagHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(&b, "  --%s\t%s\n", f.Name, f.Usage)
	})
	return b.String()
}

// client is the API client g's flags and the environment describe: the
// URL from --api, --stack, KEYVEND_API, KEYVEND_STACK or the local
// default, in that order; a bearer token from --token or KEYVEND_TOKEN;
// else, for an API not on this machine, SigV4 with the default AWS
// credential chain. A local keyvend serve gets unsigned requests: its
// caller is fixed.
func (g *globals) client(ctx context.Context) (*client.Client, error) {
	var cfg *aws.Config // loaded once, when needed
	awsConfig := func() (aws.Config, error) {
		if cfg == nil {
			c, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return c, fmt.Errorf("load AWS configuration: %w", err)
			}
			cfg = &c
		}
		return *cfg, nil
	}
	api, stack := g.api, g.stack
	if api == "" && stack == "" {
		api, stack = os.Getenv("KEYVEND_API"), os.Getenv("KEYVEND_STACK")
	}
	switch {
	case api != "":
	case stack != "":
		c, err := awsConfig()
		if err != nil {
			return nil, err
		}
		if api, err = client.APIFromStack(ctx, c, stack); err != nil {
			return nil, err
		}
	default:
		api = client.DefaultAPI
	}
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("the API URL %q is not an http(s) URL", api)
	}
	c := &client.Client{BaseURL: api}
	token := g.token
	if token == "" {
		token = os.Getenv("KEYVEND_TOKEN")
	}
	switch {
	case token != "":
		c.Auth, c.Token = client.Bearer, token
	case client.Local(api):
		c.Auth = client.None
	default:
		cfg, err := awsConfig()
		if err != nil {
			return nil, err
		}
		c.Auth, c.Credentials, c.Region = client.SigV4, cfg.Credentials, cfg.Region
	}
	return c, nil
}

// parseGrant reads bucket[:access[:prefix]]; access defaults to read-only.
// The prefix may itself hold colons.
func parseGrant(spec string) (policy.Grant, error) {
	parts := strings.SplitN(spec, ":", 3)
	g := policy.Grant{Bucket: parts[0], Access: policy.ReadOnly}
	if len(parts) > 1 && parts[1] != "" {
		g.Access = policy.Access(parts[1])
	}
	if len(parts) > 2 {
		g.Prefix = parts[2]
	}
	if g.Bucket == "" {
		return g, usagef("grant %q: no bucket (want bucket[:access[:prefix]])", spec)
	}
	switch g.Access {
	case policy.ReadOnly, policy.WriteOnly, policy.ReadWrite, policy.Full:
	default:
		return g, usagef("grant %q: access %q is not one of read-only, write-only, read-write, full", spec, g.Access)
	}
	return g, nil
}

func parseGrants(specs []string) ([]policy.Grant, error) {
	gs := make([]policy.Grant, 0, len(specs))
	for _, s := range specs {
		g, err := parseGrant(s)
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, nil
}

func grantString(g policy.Grant) string {
	s := g.Bucket + " " + string(g.Access)
	if g.Prefix != "" {
		s += " " + g.Prefix + "*"
	}
	return s
}

// table is a tabwriter on w; flush it.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// printRaw prints an answer's JSON as the API sent it.
func printRaw(w io.Writer, body []byte) error {
	_, err := fmt.Fprintln(w, strings.TrimSpace(string(body)))
	return err
}
