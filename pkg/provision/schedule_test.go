package provision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

const rotationFn = "arn:aws:lambda:us-east-1:123456789012:function:keyvend-rotate"

// scheduleRules: 90 days on *.example.com, 30 on prod-*.example.com, none
// on *.example.org.
const scheduleRules = `{"rules":[
	{"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":["read-write"],"rotate_every":"2160h"},
	{"principals":["` + testCaller + `"],"buckets":["prod-*.example.com"],"access":["read-write"],"rotate_every":"720h"},
	{"principals":["` + testCaller + `"],"buckets":["*.example.org"],"access":["read-write"]}]}`

// scheduleEnv is a service with scheduleRules and a rotation function
// (modelled as existing: awstest.RotationFunction).
func scheduleEnv(t *testing.T) *env {
	t.Helper()
	return build(t, "", scheduleRules, func(c *aws.Config) { awstest.RotationFunction(c, rotationFn) },
		func(s *provision.Settings) { s.RotationFunctionARN = rotationFn })
}

// secretSchedule is the secret's schedule as Secrets Manager holds it.
func secretSchedule(t *testing.T, e *env, user string) (enabled bool, days int64, fn string, next time.Time) {
	t.Helper()
	d, err := e.sm.DescribeSecret(ctx(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(e.SecretName(user))})
	if err != nil {
		t.Fatal(err)
	}
	if d.RotationRules != nil {
		days = aws.ToInt64(d.RotationRules.AutomaticallyAfterDays)
	}
	return aws.ToBool(d.RotationEnabled), days, aws.ToString(d.RotationLambdaARN), aws.ToTime(d.NextRotationDate)
}

// TestCreateSchedulesTheRotationTheRulesAskFor: a user whose grants a
// rule with rotate_every covers gets its secret's rotation scheduled with
// the rotation function, without rotating now; Describe shows the schedule
// and the next rotation. A user no such rule covers gets none.
func TestCreateSchedulesTheRotationTheRulesAskFor(t *testing.T) {
	e := scheduleEnv(t)
	user := awstest.Name("sched")
	res, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("site")+".example.com")))
	if err != nil {
		t.Fatal(err)
	}
	calls := e.calls.Succeeded("RotateSecret")
	if len(calls) != 1 {
		t.Fatalf("RotateSecret called %d times, want 1", len(calls))
	}
	in := calls[0].Input.(*secretsmanager.RotateSecretInput)
	if aws.ToString(in.RotationLambdaARN) != rotationFn || aws.ToInt64(in.RotationRules.AutomaticallyAfterDays) != 90 || aws.ToBool(in.RotateImmediately) {
		t.Errorf("RotateSecret(%s, every %d days, immediately %v), want the rotation function, 90 days, not now",
			aws.ToString(in.RotationLambdaARN), aws.ToInt64(in.RotationRules.AutomaticallyAfterDays), aws.ToBool(in.RotateImmediately))
	}
	enabled, days, fn, next := secretSchedule(t, e, user)
	if !enabled || days != 90 || fn != rotationFn {
		t.Errorf("secret rotates %v every %d days with %s", enabled, days, fn)
	}
	if e.MustCredential(t, user).AccessKeyID != res.AccessKeyID {
		t.Error("scheduling rotated the key now")
	}
	d, err := e.svc.Describe(ctx(), who(testCaller), user)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Now().Add(90 * 24 * time.Hour)
	if d.Rotation == nil || !d.Rotation.Enabled || d.Rotation.EveryDays != 90 || d.Rotation.NextRotation == nil ||
		d.Rotation.NextRotation.Sub(want).Abs() > time.Minute || !d.Rotation.NextRotation.Equal(next) {
		t.Errorf("describe's rotation %+v, want every 90 days, next about %v", d.Rotation, want)
	}

	plain := awstest.Name("sched-none")
	if _, err := e.svc.Create(ctx(), input(plain, rw(awstest.Name("site")+".example.org"))); err != nil {
		t.Fatal(err)
	}
	if n := len(e.calls.Succeeded("RotateSecret")); n != 1 {
		t.Errorf("RotateSecret called for a user no rotate_every covers")
	}
	if d, err := e.svc.Describe(ctx(), who(testCaller), plain); err != nil || d.Rotation == nil || d.Rotation.Enabled || d.Rotation.NextRotation != nil {
		t.Errorf("describe of a user without a schedule: %+v, %v", d.Rotation, err)
	}
}

// TestCreateUndoneWhenTheScheduleFails: the schedule is part of the user;
// a RotateSecret that fails undoes the create.
func TestCreateUndoneWhenTheScheduleFails(t *testing.T) {
	e := scheduleEnv(t)
	user := awstest.Name("sched-fail")
	e.faults.FailNth("RotateSecret", 1)
	if _, err := e.svc.Create(ctx(), input(user, rw(awstest.Name("site")+".example.com"))); err == nil {
		t.Fatal("create succeeded although scheduling its rotation failed")
	}
	if e.UserExists(t, user) {
		t.Error("the user is left")
	}
	if keys := e.Keys(t, user); len(keys) != 0 {
		t.Errorf("keys left: %v", keys)
	}
}

// TestUpdateGrantsAppliesAChangedSchedule: PUT grants follows the rules:
// a shorter period, then none (CancelRotateSecret), then back; the same
// period again calls nothing.
func TestUpdateGrantsAppliesAChangedSchedule(t *testing.T) {
	e := scheduleEnv(t)
	user := awstest.Name("sched-up")
	site := rw(awstest.Name("site") + ".example.com")
	if _, err := e.svc.Create(ctx(), input(user, site)); err != nil {
		t.Fatal(err)
	}
	update := func(gs ...policy.Grant) *provision.Description {
		t.Helper()
		d, err := e.svc.UpdateGrants(ctx(), provision.UpdateGrantsInput{Principal: who(testCaller), RequestID: "up-" + user, User: user, Grants: gs})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, step := range []struct {
		grants  []policy.Grant
		enabled bool
		days    int64
		calls   string
	}{
		{[]policy.Grant{site, rw(awstest.Name("prod-x") + ".example.com")}, true, 30, "RotateSecret"},
		{[]policy.Grant{rw(awstest.Name("site") + ".example.org")}, false, 0, "CancelRotateSecret"},
		{[]policy.Grant{site}, true, 90, "RotateSecret"},
		{[]policy.Grant{site, rw(awstest.Name("other") + ".example.com")}, true, 90, ""},
	} {
		e.calls.Reset()
		d := update(step.grants...)
		var got []string
		for _, c := range e.calls.Writes() {
			if c.Service == "Secrets Manager" {
				got = append(got, c.Operation)
			}
		}
		if strings.Join(got, " ") != step.calls {
			t.Errorf("grants %v: Secrets Manager writes %v, want %q", step.grants, got, step.calls)
		}
		enabled, days, _, _ := secretSchedule(t, e, user)
		if enabled != step.enabled || (step.enabled && days != step.days) {
			t.Errorf("grants %v: secret rotates %v every %d days, want %v every %d", step.grants, enabled, days, step.enabled, step.days)
		}
		if d.Rotation == nil || d.Rotation.Enabled != step.enabled || d.Rotation.EveryDays != step.days {
			t.Errorf("grants %v: the answer's rotation %+v, want enabled %v every %d days", step.grants, d.Rotation, step.enabled, step.days)
		}
	}
}

// TestRotateEveryNeedsARotationFunction: rules asking for rotate_every
// without a rotation function configured stop keyvend from starting, with
// a message naming the setting; a malformed ARN too.
func TestRotateEveryNeedsARotationFunction(t *testing.T) {
	rules, err := authz.Parse(strings.NewReader(scheduleRules))
	if err != nil {
		t.Fatal(err)
	}
	settings := provisiontest.New(t).Settings
	for arn, want := range map[string]string{"": "KEYVEND_ROTATION_FUNCTION_ARN", "keyvend-rotate": "not a Lambda function ARN"} {
		s := settings
		s.RotationFunctionARN = arn
		if _, err := provision.New(nil, nil, rules, s, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rotation function %q: %v, want an error saying %q", arn, err, want)
		}
	}
	s := settings
	s.RotationFunctionARN = rotationFn
	if _, err := provision.New(nil, nil, rules, s, nil); err != nil {
		t.Errorf("with a rotation function: %v", err)
	}
}
