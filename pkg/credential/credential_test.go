package credential_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/credential"
)

func TestJSONIsCredentialProcessOutput(t *testing.T) {
	c := credential.Of(&iamtypes.AccessKey{AccessKeyId: aws.String("AKIAEXAMPLE"), SecretAccessKey: aws.String("s3cr3t")})
	want := `{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s3cr3t"}`
	if got := c.JSON(); got != want {
		t.Fatalf("JSON() = %s, want %s", got, want)
	}
	back, ok := credential.Parse(c.JSON())
	if !ok || back != c {
		t.Fatalf("Parse(JSON()) = %+v, %v; want %+v", back, ok, c)
	}
}

func TestParseRefusesWhatHoldsNoKey(t *testing.T) {
	for _, v := range []string{"", "not json", `{"Version":1}`, `{"AccessKeyId":""}`, `[]`} {
		if c, ok := credential.Parse(v); ok || c != (credential.Credential{}) {
			t.Errorf("Parse(%q) = %+v, %v; want nothing", v, c, ok)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := credential.Credential{Version: 1, AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cr3t"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "credential", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "credential", c)
	fmt.Fprintf(&buf, "%v %+v %s", c, c, c)
	if out := buf.String(); strings.Contains(out, "s3cr3t") || !strings.Contains(out, "AKIAEXAMPLE") {
		t.Fatalf("secret not redacted, or key id missing:\n%s", out)
	}
}

func TestProcessJSONCarriesExpiration(t *testing.T) {
	c := credential.Credential{Version: 1, AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cr3t"}
	at := time.Date(2026, 12, 3, 17, 4, 5, 600_000_000, time.FixedZone("CET", 3600))
	want := `{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s3cr3t","Expiration":"2026-12-03T16:04:05Z"}`
	if got := c.ProcessJSON(at); got != want {
		t.Fatalf("ProcessJSON() = %s, want %s", got, want)
	}
	// The stored form is unchanged and still parses back from either form.
	if strings.Contains(c.JSON(), "Expiration") {
		t.Fatalf("JSON() = %s: the stored secret gained an Expiration", c.JSON())
	}
	if back, ok := credential.Parse(c.ProcessJSON(at)); !ok || back != c {
		t.Fatalf("Parse(ProcessJSON()) = %+v, %v; want %+v", back, ok, c)
	}
}
