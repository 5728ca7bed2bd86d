package awstest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awstest"
)

const denyAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`

// TestDeleteConflicts: against moto, which deletes a user with whatever it
// still has, DeleteUser through a configuration with DeleteConflicts is
// refused with DeleteConflict while the user has a key, a group, an inline
// or an attached policy, and the user stays; once each is removed, the
// delete goes through. Without the model, moto deletes such a user at once:
// the reason the model exists.
func TestDeleteConflicts(t *testing.T) {
	ctx := context.Background()
	srv := awstest.Shared(t)
	plain := iam.NewFromConfig(awstest.Config(t, srv.URL))
	cfg := awstest.Config(t, srv.URL)
	awstest.DeleteConflicts(&cfg, plain)
	strict := iam.NewFromConfig(cfg)

	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		if err != nil {
			return "!" + err.Error()
		}
		return ""
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exists := func(user string) bool {
		t.Helper()
		_, err := plain.GetUser(ctx, &iam.GetUserInput{UserName: &user})
		switch code(err) {
		case "":
			return true
		case "NoSuchEntity":
			return false
		}
		t.Fatal(err)
		return false
	}

	// moto itself deletes a user that still has a key.
	loose := awstest.Name("dc-moto")
	must(plain.CreateUser(ctx, &iam.CreateUserInput{UserName: &loose}))
	must(plain.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &loose}))
	if _, err := plain.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &loose}); err != nil {
		t.Logf("moto now refuses to delete a user with a key (%v): DeleteConflicts (and moto.md) may be obsolete", err)
	}

	user := awstest.Name("dc-user")
	group := awstest.Name("dc-group")
	must(plain.CreateUser(ctx, &iam.CreateUserInput{UserName: &user}))
	key, err := plain.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &user})
	must(key, err)
	must(plain.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: &group}))
	must(plain.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &user, GroupName: &group}))
	must(plain.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String("inline"), PolicyDocument: aws.String(denyAll)}))
	pol, err := plain.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(awstest.Name("dc-pol")), PolicyDocument: aws.String(denyAll)})
	must(pol, err)
	must(plain.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: &user, PolicyArn: pol.Policy.Arn}))

	removals := []struct {
		blocker string
		remove  func()
	}{
		{"an access key", func() {
			must(plain.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: &user, AccessKeyId: key.AccessKey.AccessKeyId}))
		}},
		{"a group", func() {
			must(plain.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{UserName: &user, GroupName: &group}))
		}},
		{"an inline policy", func() {
			must(plain.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &user, PolicyName: aws.String("inline")}))
		}},
		{"an attached policy", func() {
			must(plain.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: &user, PolicyArn: pol.Policy.Arn}))
		}},
	}
	for _, r := range removals {
		_, err := strict.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &user})
		if code(err) != "DeleteConflict" {
			t.Fatalf("DeleteUser of a user with %s (and what follows it) = %v, want DeleteConflict", r.blocker, err)
		}
		if !exists(user) {
			t.Fatalf("user with %s deleted despite the conflict", r.blocker)
		}
		r.remove()
	}
	if _, err := strict.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &user}); err != nil {
		t.Fatalf("DeleteUser of a bare user: %v", err)
	}
	if exists(user) {
		t.Error("bare user not deleted")
	}
	if _, err := strict.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &user}); code(err) != "NoSuchEntity" {
		t.Errorf("DeleteUser of a user that is gone = %v, want moto's NoSuchEntity", err)
	}
}
