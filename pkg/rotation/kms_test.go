package rotation

import "testing"

// TestSameKMSKey: the forms of keyvend's key that name it, and those that
// do not or might not (an alias names whichever key it points at now).
func TestSameKMSKey(t *testing.T) {
	const (
		id    = "1234abcd-12ab-34cd-56ef-1234567890ab"
		arn   = "arn:aws:kms:us-east-1:123456789012:key/" + id
		mrk   = "mrk-1234abcd12ab34cd56ef1234567890ab"
		alias = "alias/keyvend"
	)
	for _, c := range []struct {
		configured, actual string
		same               bool
	}{
		{"", "", true},
		{"", "alias/aws/secretsmanager", true},
		{"alias/aws/secretsmanager", "", true},
		{"", id, false},
		{"", arn, false},
		{"", "arn:aws:kms:us-east-1:123456789012:alias/aws/secretsmanager", false},
		{id, id, true},
		{arn, arn, true},
		{id, arn, true},
		{arn, id, true},
		{id, "", false},
		{arn, "", false},
		{id, "alias/aws/secretsmanager", false},
		{id, "1234abcd-12ab-34cd-56ef-000000000000", false},
		{arn, "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-000000000000", false},
		{arn, "arn:aws:kms:us-east-1:999999999999:key/" + id, false},                                              // another account's ARN
		{"arn:aws:kms:us-east-1:123456789012:key/" + mrk, "arn:aws:kms:eu-west-1:123456789012:key/" + mrk, false}, // a replica
		{mrk, "arn:aws:kms:eu-west-1:123456789012:key/" + mrk, true},
		{alias, alias, true},
		{alias, arn, false},
		{alias, id, false},
		{alias, "arn:aws:kms:us-east-1:123456789012:" + alias, false},
		{"arn:aws:kms:us-east-1:123456789012:" + alias, "arn:aws:kms:us-east-1:123456789012:" + alias, true},
		{"arn:aws:kms:us-east-1:123456789012:" + alias, alias, false},
		{id, "arn:aws:kms:us-east-1:123456789012:alias/" + id, false}, // an alias named like the key id
		{id, "arn:aws:iam::123456789012:key/" + id, false},            // not a KMS ARN
		{id, "key/" + id, false},
	} {
		if got := sameKMSKey(c.configured, c.actual); got != c.same {
			t.Errorf("sameKMSKey(configured %q, secret's %q) = %v, want %v", c.configured, c.actual, got, c.same)
		}
	}
}
