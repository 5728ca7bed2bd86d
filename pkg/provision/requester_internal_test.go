package provision

import (
	"strings"
	"testing"
)

// TestRequesterEncoding: every principal round-trips through its tag
// form, which holds only characters IAM allows in a tag value; principals
// that need no escaping are written as they are; and values written
// before the encoding (never with a leading '=') read back literally, even
// when they hold '=' and two hex digits (a user named a=2Cb).
func TestRequesterEncoding(t *testing.T) {
	for _, id := range []string{
		"arn:aws:iam::123456789012:user/alice",
		"arn:aws:sts::123456789012:assumed-role/deployer/alice@example.com",
		"arn:aws:iam::123456789012:user/a,b",
		"arn:aws:iam::123456789012:user/a_b",
		"arn:aws:iam::123456789012:user/a=2Cb",
		"jwt:auth0|0123 with spaces",
		"jwt:ünïcödé",
		"slack:T0KEYVEND/U0ALICE",
		"=leading",
		strings.Repeat("x", MaxTagValueLen),
	} {
		v, ok := encodeRequester(id)
		if !ok {
			t.Errorf("%q: refused", id)
			continue
		}
		if got := decodeRequester(v); got != id {
			t.Errorf("%q: tag %q reads back as %q", id, v, got)
		}
		for _, c := range v {
			if !tagValueRune(c) {
				t.Errorf("%q: tag %q holds %q", id, v, c)
			}
		}
		if plain := !strings.ContainsAny(id, ",| =üïöé"); plain && v != id {
			t.Errorf("%q: written as %q, want it as it is", id, v)
		}
	}
	if v1, _ := encodeRequester("arn:aws:iam::1:user/a,b"); v1 == "arn:aws:iam::1:user/a_b" {
		t.Error("a,b and a_b are one requester")
	}
	for _, legacy := range []string{"arn:aws:iam::1:user/a=2Cb", "arn:aws:iam::1:user/a_b", "arn:aws:iam::1:role/deployer"} {
		if got := decodeRequester(legacy); got != legacy {
			t.Errorf("a tag written before the encoding, %q, reads as %q", legacy, got)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxTagValueLen+1), strings.Repeat(",", 90)} {
		if v, ok := encodeRequester(bad); ok {
			t.Errorf("%d characters: recorded as %q, want refused", len(bad), v)
		}
	}
}
