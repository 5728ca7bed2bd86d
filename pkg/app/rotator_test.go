package app_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/provisiontest"
	"github.com/keyvend/keyvend/pkg/rotation"
)

// rotateFunctionEnv is the rotation function's environment without any
// keyvend setting: a region and credentials, no shared AWS files.
func rotateFunctionEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_REGION":                  "us-east-1",
		"AWS_ACCESS_KEY_ID":           "AKIAKEYVENDTEST00000",
		"AWS_SECRET_ACCESS_KEY":       "keyvend-test-secret",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"KEYVEND_SECRET_PREFIX":       "",
		"KEYVEND_KMS_KEY_ID":          "",
		"KEYVEND_USER_PATH":           "",
		"KEYVEND_BOUNDARY_ARN":        "",
		"KEYVEND_TABLE":               "",
	} {
		t.Setenv(k, v)
	}
}

func TestRotatorRefusesToStartWithoutBoundary(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for name, env := range map[string]map[string]string{
		"no boundary":        {},
		"malformed boundary": {"KEYVEND_BOUNDARY_ARN": "keyvend-boundary"},
		"malformed path":     {"KEYVEND_BOUNDARY_ARN": provisiontest.Boundary, "KEYVEND_USER_PATH": "keyvend"},
	} {
		t.Run(name, func(t *testing.T) {
			rotateFunctionEnv(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			r, err := rotatorFromEnv(log)
			if err == nil || r != nil {
				t.Fatalf("started: rotator %v, err %v", r, err)
			}
			want := "KEYVEND_BOUNDARY_ARN"
			if name == "malformed path" {
				want = "KEYVEND_USER_PATH"
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to name %s", err, want)
			}
		})
	}
}

func TestRotatorTakesKeyvendsSettings(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	rotateFunctionEnv(t)
	want := rotation.Rotator{
		SecretPrefix: "team/keys/",
		UserPath:     "/team/",
		KMSKeyID:     "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		BoundaryARN:  provisiontest.Boundary,
	}
	t.Setenv("KEYVEND_SECRET_PREFIX", want.SecretPrefix)
	t.Setenv("KEYVEND_USER_PATH", want.UserPath)
	t.Setenv("KEYVEND_KMS_KEY_ID", want.KMSKeyID)
	t.Setenv("KEYVEND_BOUNDARY_ARN", want.BoundaryARN)
	t.Setenv("KEYVEND_TABLE", "keyvend-state")
	r, err := rotatorFromEnv(log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Store == nil || r.Store.Table() != "keyvend-state" {
		t.Errorf("the rotator's state table is %v, want KEYVEND_TABLE's", r.Store)
	}
	if r.SecretPrefix != want.SecretPrefix || r.UserPath != want.UserPath || r.KMSKeyID != want.KMSKeyID || r.BoundaryARN != want.BoundaryARN {
		t.Errorf("settings: prefix %q, path %q, key %q, boundary %q; want %q, %q, %q, %q",
			r.SecretPrefix, r.UserPath, r.KMSKeyID, r.BoundaryARN, want.SecretPrefix, want.UserPath, want.KMSKeyID, want.BoundaryARN)
	}
	if r.IAM == nil || r.Secrets == nil || r.Check == nil || r.Log != log {
		t.Error("rotator without its clients, key checker or logger")
	}
}

// rotatorFromEnv builds the rotation function's handler as its main does:
// the configuration from the environment, then app.Rotator.
func rotatorFromEnv(log *slog.Logger) (*rotation.Rotator, error) {
	c, err := app.FromEnv()
	if err != nil {
		return nil, err
	}
	return app.Rotator(context.Background(), c, log)
}
