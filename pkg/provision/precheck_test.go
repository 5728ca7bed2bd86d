package provision_test

import (
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// precheckRules: alice may vend anything on *.example.com; Slack team T1
// may vend and rotate read-write only from channel C1, and read-only
// anywhere but only with an expiry.
const precheckRules = `{"rules":[
 {"principals":["` + testCaller + `"],"buckets":["*.example.com"],"access":["read-only","write-only","read-write","full"]},
 {"principals":["slack:T1/*"],"channels":["C1"],"buckets":["*.example.com"],"access":["read-write"],"actions":["create","rotate"]},
 {"principals":["slack:T1/*"],"buckets":["*.example.com"],"access":["read-only"],"require_expiry":true,"max_ttl":"24h"}
]}`

func slackIn(user, channel string) caller.Principal {
	return caller.Principal{ID: "slack:T1/" + user, Raw: "slack:T1/" + user, Channel: channel}
}

// TestCheckCreateDecidesAsCreate: for each request CheckCreate answers,
// without any AWS call, what Create then answers before its first one.
func TestCheckCreateDecidesAsCreate(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t, precheckRules)
	bucket := awstest.Name("pre") + ".example.com"
	in := func(p caller.Principal, req provision.CreateRequest) provision.CreateInput {
		return provision.CreateInput{Principal: p, RequestID: "req-precheck", Request: req}
	}
	req := func(user string, g policy.Grant, expires string) provision.CreateRequest {
		return provision.CreateRequest{User: user, Grants: []policy.Grant{g}, Reason: "precheck", ExpiresIn: expires}
	}
	ro := policy.Grant{Bucket: bucket, Access: policy.ReadOnly}
	cases := []struct {
		name string
		in   provision.CreateInput
		want provision.Kind // 0: allowed
	}{
		{"slack caller in its channel", in(slackIn("U1", "C1"), req(awstest.Name("pre-ok"), rw(bucket), "")), 0},
		{"slack caller in another channel", in(slackIn("U1", "C2"), req(awstest.Name("pre-chan"), rw(bucket), "")), provision.KindForbidden},
		{"slack caller without a channel", in(slackIn("U1", ""), req(awstest.Name("pre-nochan"), rw(bucket), "")), provision.KindForbidden},
		{"other team", in(caller.Principal{ID: "slack:T2/U1", Channel: "C1"}, req(awstest.Name("pre-team"), rw(bucket), "")), provision.KindForbidden},
		{"read-only needs an expiry", in(slackIn("U1", "C9"), req(awstest.Name("pre-exp"), ro, "")), provision.KindInvalid},
		{"read-only with an expiry", in(slackIn("U1", "C9"), req(awstest.Name("pre-exp-ok"), ro, "2h")), 0},
		{"invalid user name", in(slackIn("U1", "C1"), req("bad name!", rw(bucket), "")), provision.KindInvalid},
		{"invalid bucket", in(slackIn("U1", "C1"), req(awstest.Name("pre-bkt"), policy.Grant{Bucket: "Not_A_Bucket", Access: policy.ReadWrite}, "")), provision.KindInvalid},
		{"IAM caller unaffected by channel rules", in(caller.Principal{ID: testCaller}, req(awstest.Name("pre-iam"), rw(bucket), "")), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.calls.Reset()
			err := svc.CheckCreate(c.in)
			if calls := e.calls.Calls(); len(calls) != 0 {
				t.Errorf("CheckCreate made AWS calls: %s", opsLine(calls))
			}
			if got := provision.KindOf(err); got != c.want || (c.want == 0 && err != nil) {
				t.Fatalf("CheckCreate = %v (kind %d), want kind %d", err, got, c.want)
			}
			// Create decides the same, and refuses before any AWS call.
			e.calls.Reset()
			res, err := svc.Create(ctx(), c.in)
			if got := provision.KindOf(err); got != c.want || (c.want == 0 && err != nil) {
				t.Fatalf("Create = %v (kind %d), CheckCreate said kind %d", err, got, c.want)
			}
			if c.want != 0 && len(e.calls.Calls()) != 0 {
				t.Errorf("refused Create made AWS calls: %s", opsLine(e.calls.Calls()))
			}
			if c.want == 0 && (res == nil || !res.Created) {
				t.Errorf("allowed Create: %+v", res)
			}
		})
	}
}

// TestCheckOnUserDecidesAsTheOperations: the precheck of describe, rotate
// and delete reads the user and its groups, changes nothing, and answers
// what the operations answer.
func TestCheckOnUserDecidesAsTheOperations(t *testing.T) {
	bothModes(t, func(t *testing.T, mode grants.Mode) { testCheckOnUser(t, newEnv(t, grantMode(mode)), mode) })
}

func testCheckOnUser(t *testing.T, e *env, mode grants.Mode) {
	svc := e.service(t, precheckRules, grantMode(mode))
	bucket := awstest.Name("preu") + ".example.com"
	user := awstest.Name("preu")
	prefixed := policy.Grant{Bucket: bucket, Access: policy.ReadWrite, Prefix: "site/"}
	if _, err := svc.Create(ctx(), provision.CreateInput{Principal: slackIn("U1", "C1"), RequestID: "req-preu",
		Request: provision.CreateRequest{User: user, Grants: []policy.Grant{prefixed}, Reason: "precheck"}}); err != nil {
		t.Fatal(err)
	}
	keysBefore := e.Keys(t, user)

	cases := []struct {
		name   string
		p      caller.Principal
		action authz.Action
		user   string
		want   provision.Kind
	}{
		{"requester describes", slackIn("U1", "C7"), authz.Describe, user, 0},
		{"requester deletes, from any channel", slackIn("U1", "C7"), authz.Delete, user, 0},
		{"teammate rotates in C1 (rule)", slackIn("U2", "C1"), authz.Rotate, user, 0},
		// Who may not see the user is told it does not exist (404); who may
		// see it but not act is refused (403).
		{"teammate rotates elsewhere", slackIn("U2", "C2"), authz.Rotate, user, provision.KindNotFound},
		{"teammate deletes in C1 (rotate rule, no delete rule)", slackIn("U2", "C1"), authz.Delete, user, provision.KindForbidden},
		{"teammate describes in C1 (rotate rule)", slackIn("U2", "C1"), authz.Describe, user, 0},
		{"teammate describes elsewhere (no rule)", slackIn("U2", "C2"), authz.Describe, user, provision.KindNotFound},
		{"IAM caller without a rule for it", caller.Principal{ID: "arn:aws:iam::123456789012:user/mallory"}, authz.Rotate, user, provision.KindNotFound},
		{"no such user", slackIn("U1", "C1"), authz.Rotate, awstest.Name("preu-none"), provision.KindNotFound},
		{"invalid name", slackIn("U1", "C1"), authz.Rotate, "bad name!", provision.KindInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.calls.Reset()
			err := svc.CheckOnUser(ctx(), c.p, c.action, c.user)
			if got := provision.KindOf(err); got != c.want || (c.want == 0 && err != nil) {
				t.Fatalf("CheckOnUser = %v (kind %d), want kind %d", err, got, c.want)
			}
			if w := e.calls.Writes(); len(w) != 0 {
				t.Errorf("CheckOnUser wrote: %v", w)
			}
			readsGrant := "GetUserPolicy" // grant mode policy: the user policy
			if mode == grants.Group {
				readsGrant = "GetGroupPolicy" // the prefixed grant is in its group's policy
			}
			if c.user == user && c.want != provision.KindInvalid && e.calls.Count(readsGrant) == 0 {
				t.Errorf("the grant was not read (%s): %v", readsGrant, e.calls.Operations())
			}
			if err != nil && strings.Contains(err.Error(), bucket) {
				t.Errorf("refusal names the user's bucket: %v", err)
			}
			// The operation itself agrees on refusals (it stops before changing anything).
			if c.want == 0 {
				return
			}
			var opErr error
			switch c.action {
			case authz.Describe:
				_, opErr = svc.Describe(ctx(), c.p, c.user)
			case authz.Rotate:
				_, opErr = svc.Rotate(ctx(), provision.RotateInput{Principal: c.p, User: c.user})
			case authz.Delete:
				opErr = svc.Delete(ctx(), provision.DeleteInput{Principal: c.p, User: c.user})
			}
			if got := provision.KindOf(opErr); got != c.want {
				t.Errorf("%s = %v (kind %d), the precheck said kind %d", c.action, opErr, got, c.want)
			}
		})
	}
	if keysAfter := e.Keys(t, user); !sameStrings(keysAfter, keysBefore) {
		t.Errorf("keys changed: %v → %v", keysBefore, keysAfter)
	}
	if err := svc.CheckOnUser(ctx(), slackIn("U1", "C1"), authz.Create, user); err == nil || provision.KindOf(err) != 0 {
		t.Errorf("CheckOnUser(create) = %v, want a plain error: create is not an action on one user", err)
	}
}
