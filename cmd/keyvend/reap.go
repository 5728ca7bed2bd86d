package main

import (
	"context"
	"io"
)

// reap runs the reaper once (provision.Service.Reap) and prints its report
// as JSON on stdout. See jobService for the flags it takes.
func reap(args []string, stdout io.Writer) error {
	svc, err := jobService("reap", args, true)
	if err != nil {
		return err
	}
	rep, err := svc.Reap(context.Background())
	return printReport(stdout, rep, err, "reaped")
}
