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
// encodeRequester writes a principal that needs no escaping — ASCII
// letters, digits and _ . : / + - @ only, as IAM ARNs usually are — as it
// is. Any other principal is written as '=' followed by the principal with
// every other byte of its UTF-8 text, '=' and space included, as '=' and
// two upper-case hex digits: arn:aws:iam::1:user/a,b becomes
// =arn:aws:iam::1:user/a=2Cb. No principal starts with '=' (they start
// arn:, jwt:, slack:), so a value without the leading '=' — every value
// written before the encoding, too — is read literally. ok is false when
// the result does not fit a tag value: such a principal cannot be
// recorded, and is refused.
func encodeRequester(id string) (v string, ok bool) {
	plain := true
	for i := 0; i < len(id); i++ {
		plain = plain && safeRequesterByte(id[i])
	}
	if plain {
		return id, id != "" && len(id) <= MaxTagValueLen
	}
	var b strings.Builder
	b.WriteByte('=')
	for i := 0; i < len(id); i++ {
		if c := id[i]; safeRequesterByte(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	v = b.String()
	return v, id != "" && len(v) <= MaxTagValueLen
}

func safeRequesterByte(c byte) bool {
	return c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:/+-@", c) >= 0)
}

// decodeRequester inverts encodeRequester: a value with the leading '='
// is unescaped, any other is the requester as it is.
func decodeRequester(v string) string {
	rest, escaped := strings.CutPrefix(v, "=")
	if !escaped {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		if rest[i] == '=' && i+2 < len(rest) && isHex(rest[i+1]) && isHex(rest[i+2]) {
			b.WriteByte(unhex(rest[i+1])<<4 | unhex(rest[i+2]))
			i += 2
			continue
		}
		b.WriteByte(rest[i])
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
	return ownsRequester(p, requesterOf(u))
}

// ownsRequester is owns on a recorded requester.
func ownsRequester(p caller.Principal, rec string) bool {
	if rec == "" || p.Requester() == "" {
		return false
	}
	return rec == p.Requester() || (rec == p.ID && p.ID != p.Requester() && isRoleARN(rec))
}

func isRoleARN(arn string) bool {
	parts := strings.SplitN(arn, ":", 6)
	return len(parts) == 6 && parts[0] == "arn" && parts[2] == "iam" && strings.HasPrefix(parts[5], "role/")
}
