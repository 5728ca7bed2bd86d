package main

// The verbs on approval requests: requests, approve, deny.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/client"
)

const (
	requestsSynopsis = "requests [--status pending]"
	approveSynopsis  = "approve <id> [--reason TEXT]"
	denySynopsis     = "deny <id> --reason TEXT"
)

func requests(ctx context.Context, args []string, stdout io.Writer) error {
	fs, g := newFlags("requests", stdout)
	status := fs.String("status", "", "only requests in this status: pending, approved, provisioned, failed, denied, expired")
	c, _, err := g.connect(ctx, fs, args, 0, 0, requestsSynopsis)
	if err != nil {
		return err
	}
	if *status != "" && !approval.Status(*status).Valid() {
		return usagef("requests: --status %q is not one of %v", *status, approval.Statuses)
	}
	l, res, err := c.Requests(ctx, *status)
	if err != nil {
		return err
	}
	if g.json {
		return printRaw(stdout, res.Body)
	}
	w := table(stdout)
	fmt.Fprintln(w, "ID\tSTATUS\tKIND\tUSER\tREQUESTER\tEXPIRES\tGRANTS")
	for _, r := range l.Requests {
		var gs []string
		for _, g := range r.Grants {
			gs = append(gs, grantString(g))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.Kind, r.User, r.Requester, r.ExpiresAt.UTC().Format(time.RFC3339), strings.Join(gs, " "))
	}
	return w.Flush()
}

func approve(ctx context.Context, args []string, stdout io.Writer) error {
	return decide(ctx, args, stdout, true)
}

func deny(ctx context.Context, args []string, stdout io.Writer) error {
	return decide(ctx, args, stdout, false)
}

func decide(ctx context.Context, args []string, stdout io.Writer, yes bool) error {
	name, synopsis := "approve", approveSynopsis
	if !yes {
		name, synopsis = "deny", denySynopsis
	}
	fs, g := newFlags(name, stdout)
	reason := fs.String("reason", "", "why (required to deny; recorded in the request and the user's history)")
	pos, err := parse(fs, args, 1, 1, synopsis)
	if err != nil {
		return err
	}
	if !yes && strings.TrimSpace(*reason) == "" {
		return usagef("deny: --reason is required\nusage: keyvend %s", denySynopsis)
	}
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	r, res, err := c.Decide(ctx, pos[0], yes, *reason)
	if err != nil {
		return err
	}
	if g.json {
		return printRaw(stdout, res.Body)
	}
	return printRequest(stdout, r)
}

// printRawOrPending prints the API's answer as is (--json) or, when it is
// a request waiting for approval (202), the request; done says whether it
// printed the answer (vend, grants).
func printRawOrPending(stdout io.Writer, g *globals, res *client.Response) (done bool, err error) {
	if g.json {
		return true, printRaw(stdout, res.Body)
	}
	pr, ok, err := client.Pending(res)
	if !ok {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	return true, printPending(stdout, pr)
}

// printPending prints a request that waits for approval (vend, grants).
func printPending(stdout io.Writer, r *approval.Request) error {
	fmt.Fprintf(stdout, "pending approval: %s\n", r.ID)
	return printRequest(stdout, r)
}

func printRequest(stdout io.Writer, r *approval.Request) error {
	w := table(stdout)
	fmt.Fprintf(w, "request\t%s\n", r.ID)
	fmt.Fprintf(w, "status\t%s\n", r.Status)
	fmt.Fprintf(w, "kind\t%s\n", r.Kind)
	fmt.Fprintf(w, "user\t%s\n", r.User)
	fmt.Fprintf(w, "requester\t%s\n", r.Requester)
	printGrants(w, r.Grants)
	for i, n := range r.Needs {
		label := ""
		if i == 0 {
			label = "needs"
		}
		fmt.Fprintf(w, "%s\t%s: %d of %s (distinct %s)\n", label, grantString(n.Grant), n.Min, strings.Join(n.Approvers, ", "), n.Distinct)
	}
	fmt.Fprintf(w, "expires\t%s\n", r.ExpiresAt.UTC().Format(time.RFC3339))
	for i, d := range r.Decisions {
		label := ""
		if i == 0 {
			label = "decisions"
		}
		why := ""
		if d.Reason != "" {
			why = ": " + d.Reason
		}
		fmt.Fprintf(w, "%s\t%s by %s at %s%s\n", label, d.Decision, d.Requester, d.At.UTC().Format(time.RFC3339), why)
	}
	if r.Answer != nil {
		fmt.Fprintf(w, "answer\t%d %s\n", r.Answer.Status, strings.TrimSpace(string(r.Answer.Body)))
	}
	return w.Flush()
}
