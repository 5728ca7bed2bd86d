package provisiontest_test

import (
	"context"
	"slices"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/provisiontest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// TestReadBack vends a user through the harness's service and reads it
// back: its key is the one in its secret, its grant is its user policy,
// its record is ready; a user never made has none of these.
func TestReadBack(t *testing.T) {
	calls := &awstest.Recorder{}
	e := provisiontest.New(t, provisiontest.Instrument(calls.Attach))
	user := awstest.Name("harness")
	g := policy.Grant{Bucket: awstest.Name("harness") + ".example.com", Access: policy.ReadWrite}
	res, err := e.Service.Create(context.Background(), provision.CreateInput{
		Principal: caller.Principal{ID: provisiontest.Caller, Raw: provisiontest.Caller},
		RequestID: "req-" + user,
		Request:   provision.CreateRequest{User: user, Grants: []policy.Grant{g}, Reason: "harness test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Count("CreateUser") != 1 {
		t.Errorf("recorded %v", calls.Operations())
	}
	if !e.UserExists(t, user) {
		t.Fatal("no user")
	}
	cred, arn, ok := e.Credential(t, user)
	if !ok || arn != res.SecretARN || cred.AccessKeyID != res.AccessKeyID {
		t.Errorf("secret %s holds %v (ok %v), want %s in %s", arn, cred, ok, res.AccessKeyID, res.SecretARN)
	}
	if keys := e.Keys(t, user); !slices.Equal(keys, []string{res.AccessKeyID}) {
		t.Errorf("keys %v", keys)
	}
	want, _ := policy.UserDocument("aws", []policy.Grant{g})
	if doc, ok := e.UserPolicy(t, user); !ok || doc != want {
		t.Errorf("user policy %q (ok %v), want %s", doc, ok, want)
	}
	if names := e.UserPolicyNames(t, user); !slices.Equal(names, []string{policy.UserPolicyName}) {
		t.Errorf("user policies %v", names)
	}
	if gs := e.Groups(t, user, ""); len(gs) != 0 {
		t.Errorf("groups %v", gs)
	}
	if rec, ok := e.Record(t, user); !ok || rec.KeyID != res.AccessKeyID {
		t.Errorf("record %+v (ok %v)", rec, ok)
	}

	missing := awstest.Name("never")
	if e.UserExists(t, missing) || e.Keys(t, missing) != nil {
		t.Error("a user never made exists")
	}
	if _, _, ok := e.Credential(t, missing); ok {
		t.Error("a user never made has a secret")
	}
	if _, ok := e.Record(t, missing); ok {
		t.Error("a user never made has a record")
	}
}

// TestAnother: another service on an Env's clients shares its state table
// and instrumentation, with its own settings.
func TestAnother(t *testing.T) {
	calls := &awstest.Recorder{}
	e := provisiontest.New(t, provisiontest.Instrument(calls.Attach))
	other := e.Another(t, provisiontest.Settings(func(s *provision.Settings) { s.GrantMode = grants.Group }))
	if other.GrantMode() != grants.Group || e.Service.GrantMode() != grants.Policy {
		t.Fatalf("modes %s, %s", e.Service.GrantMode(), other.GrantMode())
	}
	user := awstest.Name("another")
	g := policy.Grant{Bucket: awstest.Name("another") + ".example.com", Access: policy.ReadOnly}
	if _, err := other.Create(context.Background(), provision.CreateInput{
		Principal: caller.Principal{ID: provisiontest.Caller, Raw: provisiontest.Caller},
		RequestID: "req-" + user,
		Request:   provision.CreateRequest{User: user, Grants: []policy.Grant{g}, Reason: "harness test"},
	}); err != nil {
		t.Fatal(err)
	}
	if calls.Count("AddUserToGroup") != 1 {
		t.Errorf("recorded %v", calls.Operations())
	}
	if gs := e.Groups(t, user, "/keyvend/"); !slices.Equal(gs, []string{policy.GroupName(g)}) {
		t.Errorf("groups %v", gs)
	}
	if _, ok := e.Record(t, user); !ok {
		t.Error("the other service's record is not in the Env's table")
	}
}
