package main

import (
	"context"
	"io"
)

// reindex records every keyvend user the state table lacks, as IAM holds
// it (provision.Service.Reindex), and prints the report as JSON on stdout.
// See jobService for the flags it takes.
func reindex(args []string, stdout io.Writer) error {
	svc, err := jobService("reindex", args, false)
	if err != nil {
		return err
	}
	rep, err := svc.Reindex(context.Background())
	return printReport(stdout, rep, err, "recorded")
}
