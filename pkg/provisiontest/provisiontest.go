// Package provisiontest builds a *provision.Service over moto for the tests
// of every package that needs one, and reads back what the service did
// with clients the tests' instrumentation does not see. It holds no fakes:
// the service talks to a real moto_server (pkg/awstest).
package provisiontest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/state"
)

const (
	// Boundary is the permissions boundary of a test service unless its
	// settings say otherwise.
	Boundary = "arn:aws:iam::123456789012:policy/keyvend/keyvend-boundary"
	// Caller is the principal DefaultRules let vend.
	Caller = "arn:aws:iam::123456789012:user/alice"
	// DefaultRules let Caller vend anything on *.example.com: the rules of
	// a test service unless it is given others.
	DefaultRules = `{"rules":[{"principals":["` + Caller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]}]}`
)

// Option configures a test service.
type Option func(*options)

type options struct {
	endpoint   string // "" is the package's shared moto
	cfg        *aws.Config
	rules      *authz.Rules
	rulesJSON  string
	settings   []func(*provision.Settings)
	table      string
	instrument []func(*aws.Config)
	log        *slog.Logger
}

// Endpoint puts the service (and the read-back clients) on the AWS
// endpoint url instead of the package's shared moto.
func Endpoint(url string) Option { return func(o *options) { o.endpoint = url } }

// ClientConfig builds the service's clients on cfg (copied; Instrument
// still applies) instead of a plain awstest.Config of the endpoint, or, in
// Env.Another, instead of the Env's Config.
func ClientConfig(cfg aws.Config) Option {
	return func(o *options) { c := cfg.Copy(); o.cfg = &c }
}

// Rules are the service's rules, as JSON (DefaultRules unless given).
func Rules(json string) Option {
	return func(o *options) { o.rules, o.rulesJSON = nil, json }
}

// RuleSet are the service's rules, already parsed.
func RuleSet(r *authz.Rules) Option {
	return func(o *options) { o.rules, o.rulesJSON = r, "" }
}

// Settings changes the service's settings, after the harness's defaults
// (BoundaryARN Boundary, Region awstest.Region, a state table of the
// test's own: awstest.Table).
func Settings(mutate ...func(*provision.Settings)) Option {
	return func(o *options) { o.settings = append(o.settings, mutate...) }
}

// Table keeps the service's state in the existing table name, through the
// service's own (instrumented) clients, instead of in a table of the
// test's own (awstest.Table). A Store setting takes precedence.
func Table(name string) Option { return func(o *options) { o.table = name } }

// Instrument adds SDK middleware to the service's clients, in order, e.g.
// an awstest.Recorder's or awstest.Faults' Attach. The read-back clients
// are never instrumented.
func Instrument(attach ...func(*aws.Config)) Option {
	return func(o *options) { o.instrument = append(o.instrument, attach...) }
}

// Logger is the service's logger (default: JSON to io.Discard).
func Logger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// LogTo makes the service log JSON lines to w.
func LogTo(w io.Writer) Option { return Logger(slog.New(slog.NewJSONHandler(w, nil))) }

// Env is a provisioning service over moto and uninstrumented clients to
// read back what it did.
type Env struct {
	// Service is the service under test.
	Service *provision.Service
	// IAM and SM go straight to moto: nothing they do is recorded or
	// faulted.
	IAM *iam.Client
	SM  *secretsmanager.Client
	// Config is the configuration of the service's clients, with the
	// Instrument middleware (and without awstest.RequireBoundary, which
	// each service adds to its own copy).
	Config aws.Config
	// Store is the service's state table.
	Store *state.Store
	// Settings are the settings the service was given.
	Settings provision.Settings
	// URL is the AWS endpoint.
	URL string

	opts options
}

// New returns a service over moto as opts say. Every CreateUser it makes
// must carry its permissions boundary (awstest.RequireBoundary: moto drops
// it, so only the request can show it).
func New(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.endpoint == "" {
		o.endpoint = awstest.Shared(tb).URL
	}
	plain := awstest.Config(tb, o.endpoint)
	cfg := plain.Copy()
	if o.cfg != nil {
		cfg = o.cfg.Copy()
	}
	for _, attach := range o.instrument {
		attach(&cfg)
	}
	e := &Env{IAM: iam.NewFromConfig(plain), SM: secretsmanager.NewFromConfig(plain), Config: cfg, URL: o.endpoint}
	// What Another adds to: the instrumentation is in e.Config already.
	e.opts = o
	e.opts.cfg, e.opts.instrument = nil, nil
	e.Service, e.Settings = build(tb, cfg, o)
	e.Store = e.Settings.Store
	return e
}

// Another returns another service on e's (instrumented) clients, with e's
// rules and settings unless opts change them: Rules and RuleSet replace
// e's rules, Settings apply after e's, Instrument adds middleware to a
// copy of e's Config, ClientConfig replaces it. Without a Store setting it
// shares e's state table, as Lambda instances share the deployment's.
func (e *Env) Another(tb testing.TB, opts ...Option) *provision.Service {
	tb.Helper()
	o := e.opts
	o.settings = slices.Clone(o.settings)
	for _, opt := range opts {
		opt(&o)
	}
	cfg := e.Config.Copy()
	if o.cfg != nil {
		cfg = o.cfg.Copy()
	}
	cfg.APIOptions = slices.Clone(cfg.APIOptions)
	for _, attach := range o.instrument {
		attach(&cfg)
	}
	svc, _ := build(tb, cfg, o)
	return svc
}

// build makes a service on cfg as o says; it returns the settings given.
func build(tb testing.TB, cfg aws.Config, o options) (*provision.Service, provision.Settings) {
	tb.Helper()
	rules := o.rules
	if rules == nil {
		js := o.rulesJSON
		if js == "" {
			js = DefaultRules
		}
		var err error
		if rules, err = authz.Parse(strings.NewReader(js)); err != nil {
			tb.Fatalf("rules: %v", err)
		}
	}
	settings := provision.Settings{BoundaryARN: Boundary, Region: awstest.Region}
	for _, m := range o.settings {
		m(&settings)
	}
	cfg.APIOptions = slices.Clone(cfg.APIOptions)
	awstest.RequireBoundary(tb, &cfg, settings.BoundaryARN)
	switch {
	case settings.Store != nil:
	case o.table != "":
		st, err := state.New(dynamodb.NewFromConfig(cfg), o.table)
		if err != nil {
			tb.Fatalf("state table: %v", err)
		}
		settings.Store = st
	default:
		settings.Store = awstest.Table(tb, cfg)
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	svc, err := provision.New(iam.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), rules, settings, log)
	if err != nil {
		tb.Fatalf("provision service: %v", err)
	}
	return svc, settings
}

func bg() context.Context { return context.Background() }

// UserExists reports whether the IAM user exists.
func (e *Env) UserExists(tb testing.TB, user string) bool {
	tb.Helper()
	_, err := e.IAM.GetUser(bg(), &iam.GetUserInput{UserName: &user})
	switch {
	case err == nil:
		return true
	case awserr.Code(err) == "NoSuchEntity":
		return false
	}
	tb.Fatalf("get user %s: %v", user, err)
	return false
}

// Keys lists the ids of user's access keys, sorted; none (nil) when the
// user has none or does not exist.
func (e *Env) Keys(tb testing.TB, user string) []string {
	tb.Helper()
	out, err := e.IAM.ListAccessKeys(bg(), &iam.ListAccessKeysInput{UserName: &user})
	switch {
	case awserr.Code(err) == "NoSuchEntity":
		return nil
	case err != nil:
		tb.Fatalf("list keys of %s: %v", user, err)
	}
	var ids []string
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId))
	}
	slices.Sort(ids)
	return ids
}

// Groups lists the names of the groups user is in, sorted; with a path,
// only the groups under it (e.g. "/keyvend/").
func (e *Env) Groups(tb testing.TB, user, path string) []string {
	tb.Helper()
	out, err := e.IAM.ListGroupsForUser(bg(), &iam.ListGroupsForUserInput{UserName: &user})
	if err != nil {
		tb.Fatalf("list groups of %s: %v", user, err)
	}
	var names []string
	for _, g := range out.Groups {
		if path == "" || aws.ToString(g.Path) == path {
			names = append(names, aws.ToString(g.GroupName))
		}
	}
	slices.Sort(names)
	return names
}

// UserPolicy returns user's keyvend inline policy, URL-decoded; ok is false
// when it has none.
func (e *Env) UserPolicy(tb testing.TB, user string) (doc string, ok bool) {
	tb.Helper()
	out, err := e.IAM.GetUserPolicy(bg(), &iam.GetUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName)})
	switch {
	case awserr.Code(err) == "NoSuchEntity":
		return "", false
	case err != nil:
		tb.Fatalf("policy of %s: %v", user, err)
	}
	doc, err = url.PathUnescape(aws.ToString(out.PolicyDocument))
	if err != nil {
		tb.Fatal(err)
	}
	return doc, true
}

// UserPolicyNames lists the names of user's inline policies, sorted.
func (e *Env) UserPolicyNames(tb testing.TB, user string) []string {
	tb.Helper()
	out, err := e.IAM.ListUserPolicies(bg(), &iam.ListUserPoliciesInput{UserName: &user})
	if err != nil {
		tb.Fatalf("list policies of %s: %v", user, err)
	}
	names := slices.Clone(out.PolicyNames)
	slices.Sort(names)
	return names
}

// SecretName is the name of user's secret.
func (e *Env) SecretName(user string) string { return e.Service.SecretName(user) }

// Credential reads the credential in user's secret; ok is false when there
// is none to read (no secret, or one scheduled for deletion).
func (e *Env) Credential(tb testing.TB, user string) (c provision.Credential, arn string, ok bool) {
	tb.Helper()
	out, err := e.SM.GetSecretValue(bg(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(e.SecretName(user))})
	switch {
	case awserr.Is(err, "ResourceNotFoundException", "InvalidRequestException"):
		return c, "", false
	case err != nil:
		tb.Fatalf("read secret of %s: %v", user, err)
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &c); err != nil {
		tb.Fatalf("secret of %s is not a credential: %v", user, err)
	}
	return c, aws.ToString(out.ARN), true
}

// MustCredential is Credential for a secret that must hold a whole
// credential.
func (e *Env) MustCredential(tb testing.TB, user string) provision.Credential {
	tb.Helper()
	c, _, ok := e.Credential(tb, user)
	switch {
	case !ok:
		tb.Fatalf("user %s has no secret", user)
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		tb.Fatalf("secret of %s holds no whole credential", user)
	}
	return c
}

// Record reads user's record in the service's state table; ok is false
// when there is none.
func (e *Env) Record(tb testing.TB, user string) (rec *state.Record, ok bool) {
	tb.Helper()
	rec, err := e.Store.Get(bg(), user)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, false
	case err != nil:
		tb.Fatalf("record of %s: %v", user, err)
	}
	return rec, true
}
