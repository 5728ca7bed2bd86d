// Command keyvend is keyvend's local server (`keyvend serve`).
package main

import (
	"fmt"
	"os"
)

const usage = `usage: keyvend <command> [flags]

commands:
  serve   run the HTTP API locally (embedded moto unless AWS_ENDPOINT_URL or --aws)
  reap    deprovision expired users, repair or remove half-made ones, reconcile a
          slice of IAM, the state table and Secrets Manager; print a JSON report
  reindex record in the state table every keyvend user it lacks (once, after
          upgrading a deployment that vended users before the table); print a JSON report
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
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
		fmt.Fprintf(os.Stderr, "keyvend: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyvend:", err)
		os.Exit(1)
	}
}
