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
	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/provision"
)

// jobService parses the flags of a background job run by hand (reap,
// reindex) and builds the service it runs on. Jobs need an explicit AWS:
// AWS_ENDPOINT_URL (e.g. `. .keyvend/local.env` while `make run` is up)
// or --aws. With clock, --now evaluates expiry and age as of another time
// (a fake clock for tests and dry thinking). Logs go to stderr: stdout is
// the report.
func jobService(name string, args []string, clock bool) (*provision.Service, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	realAWS := fs.Bool("aws", false, "use real AWS (the default credential chain)")
	var nowFlag *string
	if clock {
		nowFlag = fs.String("now", "", "evaluate expiry and age as of this RFC 3339 time instead of the clock")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if os.Getenv("AWS_ENDPOINT_URL") == "" && !*realAWS {
		return nil, errors.New(name + " needs AWS_ENDPOINT_URL (run `. .keyvend/local.env` while `make run` is up) or --aws")
	}
	cfg, err := app.FromEnv()
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsclient.Load(context.Background())
	if err != nil {
		return nil, err
	}
	var now func() time.Time
	if nowFlag != nil && *nowFlag != "" {
		at, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return nil, fmt.Errorf("--now %q: want RFC 3339, e.g. 2030-01-02T15:04:05Z", *nowFlag)
		}
		now = func() time.Time { return at }
	}
	return app.Service(cfg, awsCfg, app.LoggerTo(os.Stderr), func(s *provision.Settings) { s.Now = now })
}

// printReport writes a job's report as indented JSON on stdout; users the
// job could not handle make the command fail, naming how many.
func printReport(stdout io.Writer, rep *provision.ReapReport, err error, what string) error {
	if rep != nil {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(rep); eerr != nil && err == nil {
			err = eerr
		}
	}
	if err == nil && len(rep.Errors) > 0 {
		err = fmt.Errorf("%d users could not be %s; see the report", len(rep.Errors), what)
	}
	return err
}
