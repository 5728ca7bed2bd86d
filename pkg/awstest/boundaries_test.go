package awstest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	boundaryA = "arn:aws:iam::123456789012:policy/keyvend/boundary-a"
	boundaryB = "arn:aws:iam::123456789012:policy/keyvend/boundary-b"
)

// TestKeepBoundaries: against moto, GetUser through a configuration with
// KeepBoundaries reports the boundary the user was created with, as AWS
// does; without it, moto's answer has none.
func TestKeepBoundaries(t *testing.T) {
	ctx := context.Background()
	srv := awstest.Shared(t)
	plain := iam.NewFromConfig(awstest.Config(t, srv.URL))
	kb := &awstest.KeepBoundaries{}
	cfg := awstest.Config(t, srv.URL)
	kb.Attach(&cfg)
	modelled := iam.NewFromConfig(cfg)

	boundaryOf := func(c *iam.Client, user string) *iamtypes.AttachedPermissionsBoundary {
		t.Helper()
		out, err := c.GetUser(ctx, &iam.GetUserInput{UserName: &user})
		if err != nil {
			t.Fatal(err)
		}
		return out.User.PermissionsBoundary
	}
	create := func(c *iam.Client, user, boundary string) error {
		in := &iam.CreateUserInput{UserName: &user, Path: aws.String("/keyvend/")}
		if boundary != "" {
			in.PermissionsBoundary = &boundary
		}
		_, err := c.CreateUser(ctx, in)
		return err
	}

	// moto itself drops the boundary: the reason KeepBoundaries exists.
	dropped := awstest.Name("kb-moto")
	if err := create(plain, dropped, boundaryA); err != nil {
		t.Fatal(err)
	}
	if b := boundaryOf(plain, dropped); b != nil {
		t.Errorf("moto now reports the boundary %q itself: KeepBoundaries (and the note in moto.md) may be obsolete", aws.ToString(b.PermissionsBoundaryArn))
	}
	if b := boundaryOf(modelled, dropped); b != nil {
		t.Errorf("a user created through another configuration has boundary %q; KeepBoundaries never saw its CreateUser", aws.ToString(b.PermissionsBoundaryArn))
	}

	// Created through it with a boundary: GetUser reports it, as AWS does.
	user := awstest.Name("Kb-Mixed")
	if err := create(modelled, user, boundaryA); err != nil {
		t.Fatal(err)
	}
	b := boundaryOf(modelled, user)
	if b == nil || aws.ToString(b.PermissionsBoundaryArn) != boundaryA || b.PermissionsBoundaryType != iamtypes.PermissionsBoundaryAttachmentTypePolicy {
		t.Fatalf("GetUser boundary = %+v, want %s of type Policy", b, boundaryA)
	}
	if got := kb.Boundary(strings.ToUpper(user)); got != boundaryA {
		t.Errorf("Boundary(%q) = %q, want %s: IAM user names are case-insensitive", strings.ToUpper(user), got, boundaryA)
	}
	if b := boundaryOf(plain, user); b != nil {
		t.Errorf("GetUser through a configuration without KeepBoundaries reports %q", aws.ToString(b.PermissionsBoundaryArn))
	}

	// A CreateUser that fails records nothing.
	err := create(modelled, user, boundaryB)
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "EntityAlreadyExists" {
		t.Fatalf("second CreateUser: err = %v, want EntityAlreadyExists", err)
	}
	if b := boundaryOf(modelled, user); aws.ToString(b.PermissionsBoundaryArn) != boundaryA {
		t.Errorf("after a failed CreateUser with %s, boundary = %+v, want still %s", boundaryB, b, boundaryA)
	}

	// Created without a boundary: none.
	bare := awstest.Name("kb-bare")
	if err := create(modelled, bare, ""); err != nil {
		t.Fatal(err)
	}
	if b := boundaryOf(modelled, bare); b != nil {
		t.Errorf("a user created without a boundary has %q", aws.ToString(b.PermissionsBoundaryArn))
	}

	// Deleted and created again without one: none, as in AWS.
	if _, err := modelled.DeleteUser(ctx, &iam.DeleteUserInput{UserName: &user}); err != nil {
		t.Fatal(err)
	}
	if err := create(modelled, user, ""); err != nil {
		t.Fatal(err)
	}
	if b := boundaryOf(modelled, user); b != nil {
		t.Errorf("a user deleted and created again without a boundary has %q", aws.ToString(b.PermissionsBoundaryArn))
	}
}
