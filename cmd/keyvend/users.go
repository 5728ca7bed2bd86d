package main

// The verbs on users: vend, show, rotate, delete, grants, list, history.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/client"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

const (
	vendSynopsis    = "vend <user> <bucket>[:<access>[:<prefix>]]... --reason TEXT [--expires 720h] [--wait]"
	showSynopsis    = "show <user>"
	rotateSynopsis  = "rotate <user> [--wait]"
	deleteSynopsis  = "delete <user> [--force]"
	historySynopsis = "history <user>"
	grantsSynopsis  = "grants <user> <bucket>[:<access>[:<prefix>]]... [--expires 720h]"
	listSynopsis    = "list [--bucket NAME] [--requester ARN]"
)

func vend(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("vend", stdout)
	reason := fs.String("reason", "", "why the credentials are needed (required; recorded as a tag)")
	expires := fs.String("expires", "", "lifetime as a Go duration, e.g. 720h (default: none, or a rule's)")
	wait := fs.Bool("wait", false, "answer only once AWS accepts the new key")
	pos, err := parse(fs, args, 2, -1, vendSynopsis)
	if err != nil {
		return err
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("vend: --reason is required\nusage: keyvend %s", vendSynopsis)
	}
	if err := checkExpires("vend", *expires); err != nil {
		return err
	}
	grants, err := parseGrants(pos[1:])
	if err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	r, res, err := c.Create(ctx, client.CreateRequest{User: pos[0], Grants: grants, Reason: *reason, ExpiresIn: *expires, Wait: *wait})
	if err != nil {
		return err
	}
	if done, err := printRawOrPending(stdout, g, res); done {
		return err
	}
	w := table(stdout)
	fmt.Fprintf(w, "user\t%s\n", r.User)
	fmt.Fprintf(w, "user ARN\t%s\n", r.UserARN)
	printGrants(w, r.Grants)
	fmt.Fprintf(w, "access key\t%s\n", r.AccessKeyID)
	fmt.Fprintf(w, "secret\t%s\n", r.SecretARN)
	printExpiry(w, r.ExpiresAt, r.ExpiryCapped)
	printReady(w, r.Readiness)
	if err := w.Flush(); err != nil {
		return err
	}
	printLines(stdout, r.User, r.CredentialProcess, r.CredentialProcessKeyvend)
	return nil
}

func show(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("show", stdout)
	c, pos, err := g.connect(ctx, fs, args, 1, 1, showSynopsis)
	if err != nil {
		return err
	}
	d, res, err := c.Describe(ctx, pos[0])
	if err != nil {
		return err
	}
	if g.json {
		return printRaw(stdout, res.Body)
	}
	return printDescription(stdout, d)
}

func printDescription(stdout io.Writer, d *provision.Description) error {
	w := table(stdout)
	fmt.Fprintf(w, "user\t%s\n", d.User)
	fmt.Fprintf(w, "user ARN\t%s\n", d.UserARN)
	fmt.Fprintf(w, "requester\t%s\n", d.Requester)
	fmt.Fprintf(w, "created\t%s\n", d.CreatedAt.UTC().Format(time.RFC3339))
	printExpiry(w, d.ExpiresAt, d.ExpiryCapped)
	printGrants(w, d.Grants)
	if !d.GrantsIntact {
		fmt.Fprintf(w, "\t(keyvend could not read every grant exactly: PUT grants rewrites them)\n")
	}
	fmt.Fprintf(w, "grant mode\t%s\n", d.GrantMode)
	for i, k := range d.AccessKeys {
		label := ""
		if i == 0 {
			label = "access keys"
		}
		in := ""
		if k.InSecret {
			in = "  (in the secret)"
		}
		fmt.Fprintf(w, "%s\t%s %s %s%s\n", label, k.AccessKeyID, k.Status, k.CreatedAt.UTC().Format(time.RFC3339), in)
	}
	secret := d.SecretARN
	if secret == "" {
		secret = d.SecretName + " (none)"
	}
	fmt.Fprintf(w, "secret\t%s\n", secret)
	fmt.Fprintf(w, "complete\t%t\n", d.Complete)
	fmt.Fprintf(w, "version\t%d\n", d.Version)
	return w.Flush()
}

func rotate(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("rotate", stdout)
	wait := fs.Bool("wait", false, "answer only once AWS accepts the new key")
	c, pos, err := g.connect(ctx, fs, args, 1, 1, rotateSynopsis)
	if err != nil {
		return err
	}
	r, res, err := c.Rotate(ctx, pos[0], *wait)
	if err != nil {
		return err
	}
	if g.json {
		return printRaw(stdout, res.Body)
	}
	w := table(stdout)
	fmt.Fprintf(w, "user\t%s\n", r.User)
	fmt.Fprintf(w, "access key\t%s\n", r.AccessKeyID)
	if r.PreviousAccessKeyID != "" {
		state := "deleted"
		if !r.PreviousKeyDeleted {
			state = "not deleted yet"
		}
		fmt.Fprintf(w, "previous key\t%s (%s)\n", r.PreviousAccessKeyID, state)
	}
	fmt.Fprintf(w, "secret\t%s\n", r.SecretARN)
	printReady(w, r.Readiness)
	if err := w.Flush(); err != nil {
		return err
	}
	printLines(stdout, r.User, r.CredentialProcess, r.CredentialProcessKeyvend)
	return nil
}

func deleteUser(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("delete", stdout)
	force := fs.Bool("force", false, "delete even what keyvend cannot read exactly (DELETE ?force=true)")
	c, pos, err := g.connect(ctx, fs, args, 1, 1, deleteSynopsis)
	if err != nil {
		return err
	}
	if _, err := c.Delete(ctx, pos[0], *force); err != nil {
		return err
	}
	if !g.json {
		fmt.Fprintf(stdout, "deleted %s\n", pos[0])
	}
	return nil
}

// grantsCmd replaces a user's grants. It reads the user first and sends
// its ETag as If-Match, so a change made in between is refused (412, exit
// code 5) rather than overwritten.
func grantsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("grants", stdout)
	expires := fs.String("expires", "", "new lifetime as a Go duration, e.g. 720h (default: keep the expiry)")
	pos, err := parse(fs, args, 2, -1, grantsSynopsis)
	if err != nil {
		return err
	}
	if err := checkExpires("grants", *expires); err != nil {
		return err
	}
	grants, err := parseGrants(pos[1:])
	if err != nil {
		return err
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, cur, err := c.Describe(ctx, pos[0])
	if err != nil {
		return err
	}
	etag := cur.Header.Get("ETag")
	if etag == "" {
		return fmt.Errorf("user %s has no ETag (no record in keyvend's state table), so a concurrent change could not be detected: run `keyvend reindex`, then retry", pos[0])
	}
	d, res, err := c.UpdateGrants(ctx, pos[0], etag, client.GrantsRequest{Grants: grants, ExpiresIn: *expires})
	if err != nil {
		return err
	}
	if done, err := printRawOrPending(stdout, g, res); done {
		return err
	}
	return printDescription(stdout, d)
}

func list(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("list", stdout)
	bucket := fs.String("bucket", "", "only users with a grant on this bucket")
	requester := fs.String("requester", "", "only users this principal vended")
	c, _, err := g.connect(ctx, fs, args, 0, 0, listSynopsis)
	if err != nil {
		return err
	}
	users, raw, err := c.List(ctx, *bucket, *requester)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(stdout, map[string]any{"users": raw})
	}
	w := table(stdout)
	fmt.Fprintln(w, "USER\tSTATE\tEXPIRES\tKEY AGE\tREQUESTER\tGRANTS")
	for _, u := range users {
		exp := "-"
		if u.ExpiresAt != nil {
			exp = u.ExpiresAt.UTC().Format(time.RFC3339)
		}
		age := "-"
		if len(u.AccessKeys) > 0 {
			age = (time.Duration(u.AccessKeys[0].AgeSeconds) * time.Second).String()
		}
		gs := make([]string, len(u.Grants))
		for i, gr := range u.Grants {
			gs[i] = grantString(gr)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.User, u.State, exp, age, u.Requester, strings.Join(gs, ", "))
	}
	return w.Flush()
}

func history(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("history", stdout)
	c, pos, err := g.connect(ctx, fs, args, 1, 1, historySynopsis)
	if err != nil {
		return err
	}
	entries, raw, err := c.History(ctx, pos[0])
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(stdout, map[string]any{"user": pos[0], "entries": raw})
	}
	w := table(stdout)
	fmt.Fprintln(w, "AT\tACTION\tRESULT\tPRINCIPAL\tREQUEST ID")
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Action, e.Result, e.Principal, e.RequestID)
	}
	return w.Flush()
}

func printGrants(w io.Writer, gs []policy.Grant) {
	for i, g := range gs {
		label := ""
		if i == 0 {
			label = "grants"
		}
		fmt.Fprintf(w, "%s\t%s\n", label, grantString(g))
	}
}

func printExpiry(w io.Writer, at *time.Time, capped bool) {
	if at == nil {
		fmt.Fprintf(w, "expires\tnever\n")
		return
	}
	note := ""
	if capped {
		note = " (shortened by a rule's max_ttl)"
	}
	fmt.Fprintf(w, "expires\t%s%s\n", at.UTC().Format(time.RFC3339), note)
}

func printReady(w io.Writer, r provision.Readiness) {
	if r.Ready == nil {
		return
	}
	fmt.Fprintf(w, "ready\t%t\n", *r.Ready)
	if r.ReadyHint != "" {
		fmt.Fprintf(w, "\t%s\n", r.ReadyHint)
	}
}

// printLines prints the two credential_process lines and how to use them.
func printLines(w io.Writer, user, awsCLI, helper string) {
	fmt.Fprintf(w, "\n~/.aws/config, with the AWS CLI installed:\n  %s\n", awsCLI)
	if helper != "" {
		fmt.Fprintf(w, "or with keyvend's helper (`keyvend profile %s` writes it):\n  %s\n", user, helper)
	}
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printRaw(w, b)
}

// checkExpires refuses an --expires that is not a Go duration, before any
// call (the API would refuse it too, after the call).
func checkExpires(verb, v string) error {
	if v == "" {
		return nil
	}
	if _, err := time.ParseDuration(v); err != nil {
		return usagef("%s: --expires %q is not a duration such as 720h", verb, v)
	}
	return nil
}
