package provision

import (
	"fmt"
	"strings"

	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/caller"
)

// The requester of a user is recorded in a tag, and ownership is decided
// by comparing it with the caller, so it must round-trip exactly: IAM and
// Secrets Manager tag values hold only letters, digits, white space and
// _ . : / = + - @ and at most 256 characters. Writing other characters as
// '_' (as keyvend once did) made user/a,b and user/a_b the same requester.
//
// encodeRequester keeps ASCII letters, digits and _ . : / + - @ as they are
// and writes every other byte of the UTF-8 text, '=' and space included, as
// '=' and two upper-case hex digits: arn:aws:iam::1:user/a,b becomes
// arn:aws:iam::1:user/a=2Cb. ok is false when the result does not fit a tag
// value: such a principal cannot be recorded, and is refused.
func encodeRequester(id string) (v string, ok bool) {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:/+-@", c) >= 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	v = b.String()
	return v, id != "" && len(v) <= MaxTagValueLen
}

// decodeRequester inverts encodeRequester. A value with no valid escape
// is returned as it is: a requester recorded before the encoding (which
// never held '=' followed by two hex digits in practice).
func decodeRequester(v string) string {
	if !strings.Contains(v, "=") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '=' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			b.WriteByte(unhex(v[i+1])<<4 | unhex(v[i+2]))
			i += 2
			continue
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// requesterOf is the recorded requester of a managed user, exactly.
func requesterOf(u *iamtypes.User) string { return decodeRequester(userTag(u, TagRequester)) }

// owns reports whether p is the recorded requester of u: exactly its
// identity (Principal.Requester, an assumed-role session included). A user
// recorded before sessions were (with the role's ARN as requester) stays
// owned by every session of that role, as it was.
func owns(p caller.Principal, u *iamtypes.User) bool {
	rec := requesterOf(u)
	if rec == "" || p.Requester() == "" {
		return false
	}
	return rec == p.Requester() || (rec == p.ID && p.ID != p.Requester() && isRoleARN(rec))
}

func isRoleARN(arn string) bool {
	parts := strings.SplitN(arn, ":", 6)
	return len(parts) == 6 && parts[0] == "arn" && parts[2] == "iam" && strings.HasPrefix(parts[5], "role/")
}
