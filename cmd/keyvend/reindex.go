package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keyvend/keyvend/pkg/app"
)

// reindex records every keyvend user the state table lacks, as IAM holds
// it (provision.Service.Reindex), and prints the report as JSON on stdout.
// Like reap, it needs an explicit AWS: AWS_ENDPOINT_URL or --aws.
func reindex(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	realAWS := fs.Bool("aws", false, "use real AWS (the default credential chain)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("AWS_ENDPOINT_URL") == "" && !*realAWS {
		return errors.New("reindex needs AWS_ENDPOINT_URL (run `. .keyvend/local.env` while `make run` is up) or --aws")
	}
	cfg, err := app.FromEnv()
	if err != nil {
		return err
	}
	ctx := context.Background()
	awsCfg, err := app.LoadAWS(ctx)
	if err != nil {
		return err
	}
	svc, err := app.NewService(cfg, awsCfg, app.LoggerTo(os.Stderr))
	if err != nil {
		return err
	}
	rep, err := svc.Reindex(ctx)
	if rep != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(rep); eerr != nil && err == nil {
			err = eerr
		}
	}
	if err == nil && len(rep.Errors) > 0 {
		err = fmt.Errorf("%d users could not be recorded; see the report", len(rep.Errors))
	}
	return err
}
