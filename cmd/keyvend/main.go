// Command keyvend is keyvend's local server (`keyvend serve`), its
// maintenance jobs (`reap`, `reindex`) and its client: the verbs that call
// keyvend's API and the credential_process helper.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: keyvend <command> [arguments] [flags]

Users (calls keyvend's API; flags may come before or after the arguments):
  vend <user> <bucket>[:<access>[:<prefix>]]... --reason TEXT [--expires 720h] [--wait]
            vend an IAM user with these grants (access: read-only (the default),
            write-only, read-write, full; prefix: a key prefix, e.g. site.example.com:read-write:img/)
  show <user>                 describe a user (grants, keys, secret, expiry)
  rotate <user> [--wait]      replace the user's access key
  delete <user> [--force]     deprovision the user
  grants <user> <bucket>[:<access>[:<prefix>]]... [--expires 720h]
            replace the user's grants (refused with exit code 5 if the user
            changed since it was read)
  list [--bucket NAME] [--requester ARN]
            the users you may see
  history <user>              what was done to the user, by whom, newest first

Approvals (a vend or grants that a rule makes wait prints "pending approval: <id>", exit 0):
  requests [--status pending] your requests, and the pending ones you may decide
  approve <id> [--reason TEXT]
            approve a request: the last approval needed provisions it as its requester
  deny <id> --reason TEXT     deny a request: nothing is provisioned

  Every one of them takes:
    --api URL      keyvend's API (default $KEYVEND_API, else the stack's, else
                   http://127.0.0.1:8080, the local keyvend serve)
    --stack NAME   read the API URL from the ApiUrl output of keyvend's CloudFormation
                   stack (default $KEYVEND_STACK)
    --token TOKEN  send Authorization: Bearer TOKEN, for a JWT deployment
                   (default $KEYVEND_TOKEN); without a token, requests to an API
                   not on this machine are signed with SigV4 (execute-api) from the
                   default AWS credential chain; a local keyvend serve gets them unsigned
    --json         print the API's JSON instead of a table

Credentials:
  credentials --secret <arn-or-name>
            credential_process helper: print the key in a keyvend secret as
            credential_process JSON with an Expiration 20 minutes ahead (reads the
            secret with the default AWS credential chain, no AWS CLI needed)
  profile <user> [--name PROFILE] [--config PATH]
            write the [profile PROFILE] section (default: the user's name) of
            $AWS_CONFIG_FILE or ~/.aws/config: credential_process runs this
            binary's credentials helper on the user's secret; other profiles are kept

Server and jobs:
  serve     run the HTTP API locally (embedded moto unless AWS_ENDPOINT_URL or --aws)
  reap      deprovision expired users, repair or remove half-made ones, reconcile a
            slice of IAM, the state table and Secrets Manager; print a JSON report
  reindex   record in the state table every keyvend user it lacks (once, after
            upgrading a deployment that vended users before the table); print a JSON report

Exit codes:
  0 ok   1 other errors   2 usage   3 forbidden (401, 403)   4 not found (404)
  5 conflict (409, 412)
Errors print the problem's detail and request id to stderr.
`

// verbs are the commands that take a context and print to stdout.
var verbs = map[string]func(context.Context, []string, io.Writer) error{
	"vend":        vend,
	"show":        show,
	"rotate":      rotate,
	"delete":      deleteUser,
	"grants":      grantsCmd,
	"list":        list,
	"history":     history,
	"requests":    requests,
	"approve":     approve,
	"deny":        deny,
	"credentials": credentials,
	"profile":     profile,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(exitUsage)
	}
	var err error
	switch cmd := os.Args[1]; cmd {
	case "serve":
		err = serve(os.Args[2:])
	case "reap":
		err = reap(os.Args[2:], os.Stdout)
	case "reindex":
		err = reindex(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		verb, ok := verbs[cmd]
		if !ok {
			fmt.Fprintf(os.Stderr, "keyvend: unknown command %q\n%s", cmd, usage)
			os.Exit(exitUsage)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = verb(ctx, os.Args[2:], os.Stdout)
		stop()
		if h, ok := err.(helpRequested); ok {
			fmt.Print(string(h))
			return
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyvend:", err)
		os.Exit(exitCode(err))
	}
}
