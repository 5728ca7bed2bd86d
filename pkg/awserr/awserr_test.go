package awserr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/keyvend/keyvend/pkg/awserr"
)

func TestCodeThroughWrapping(t *testing.T) {
	api := &smithy.GenericAPIError{Code: "NoSuchEntity", Message: "no user"}
	wrapped := fmt.Errorf("read user x: %w", fmt.Errorf("operation error IAM: GetUser: %w", api))
	if got := awserr.Code(wrapped); got != "NoSuchEntity" {
		t.Errorf("Code = %q", got)
	}
	if !awserr.Is(wrapped, "EntityAlreadyExists", "NoSuchEntity") || awserr.Is(wrapped, "EntityAlreadyExists") {
		t.Error("Is does not match the code exactly")
	}
	for _, err := range []error{nil, errors.New("plain"), context.Canceled} {
		if awserr.Code(err) != "" || awserr.Is(err, "") {
			t.Errorf("%v: taken as an AWS error", err)
		}
	}
}
