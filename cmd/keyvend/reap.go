package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/provision"
)

// reap runs the reaper once and prints its report as JSON on stdout. It
// needs an explicit AWS: AWS_ENDPOINT_URL (e.g. `. .keyvend/local.env`
// while `make run` is up) or --aws. --now evaluates expiry as of another
// time (a fake clock for tests and dry thinking).
func reap(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reap", flag.ContinueOnError)
	realAWS := fs.Bool("aws", false, "use real AWS (the default credential chain)")
	nowFlag := fs.String("now", "", "evaluate expiry and age as of this RFC 3339 time instead of the clock")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Getenv("AWS_ENDPOINT_URL") == "" && !*realAWS {
		return errors.New("reap needs AWS_ENDPOINT_URL (run `. .keyvend/local.env` while `make run` is up) or --aws")
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
	log := app.LoggerTo(os.Stderr) // stdout is the report
	var now func() time.Time
	if *nowFlag != "" {
		at, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return fmt.Errorf("--now %q: want RFC 3339, e.g. 2030-01-02T15:04:05Z", *nowFlag)
		}
		now = func() time.Time { return at }
	}
	svc, err := app.NewServiceWith(cfg, awsCfg, log, func(s *provision.Settings) { s.Now = now })
	if err != nil {
		return err
	}
	rep, err := svc.Reap(ctx)
	if rep != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(rep); eerr != nil && err == nil {
			err = eerr
		}
	}
	if err == nil && len(rep.Errors) > 0 {
		err = fmt.Errorf("%d users could not be reaped; see the report", len(rep.Errors))
	}
	return err
}
