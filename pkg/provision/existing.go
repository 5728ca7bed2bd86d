package provision

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// inProgressRetry is the Retry-After for a user another request is creating.
const inProgressRetry = 2 * time.Second

// existing handles a create request whose CreateUser found the name taken:
//   - not a keyvend user → 409;
//   - complete with the same grants → the same key (200), nothing created;
//   - complete with other grants → 409, unless it is young, was created for
//     these grants (its keyvend:grants tag) and is in a subset of their
//     groups: another request is still joining them (409 with Retry-After);
//   - half-made and younger than RepairAfter → another request is probably
//     creating it: 409 with Retry-After;
//   - half-made and older → repair it (repair.go).
func (s *Service) existing(ctx context.Context, in Input, groups []GroupRef) (*Result, error) {
	name := in.Request.User
	got, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: &name})
	switch {
	case isCode(err, codeNoSuchEntity): // deleted between our CreateUser and now
		return nil, userChanging(name)
	case err != nil:
		return nil, wrapf(err, "read existing user %s", name)
	}
	user := got.User
	if got := aws.ToString(user.UserName); got != name {
		// IAM names are unique case-insensitively; the secret is named by the
		// exact spelling, so a differently spelled request is not the same user.
		return nil, &Error{Kind: KindConflict, Detail: fmt.Sprintf("IAM user %s already exists (user names are case-insensitive)", got)}
	}
	if !s.managedUser(user) {
		return nil, &Error{Kind: KindConflict, Detail: fmt.Sprintf("IAM user %s already exists and is not managed by keyvend", name)}
	}
	st, err := s.readState(ctx, name)
	switch {
	case isCode(err, codeNoSuchEntity): // deleted since GetUser: another request's compensation
		return nil, userChanging(name)
	case err != nil:
		return nil, err
	}
	if r, err, done := s.replay(in, user, st, groups); done {
		return r, err
	}
	if !subset(st.groupSet(), groups) {
		return nil, conflictGrants(name)
	}
	if age := s.cfg.Now().Sub(aws.ToTime(user.CreateDate)); age < s.cfg.RepairAfter {
		return nil, &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is being provisioned by another request", name)}
	}
	return s.repair(ctx, in, user, groups)
}

// replay answers for a complete user: the same key when the grants match,
// 409 when they do not. done is false when the user is not complete.
func (s *Service) replay(in Input, user *iamtypes.User, st *userState, groups []GroupRef) (r *Result, err error, done bool) {
	if !st.complete() {
		return nil, nil, false
	}
	want := make(map[string]bool, len(groups))
	for _, g := range groups {
		want[g.Name] = true
	}
	if !sameSet(st.groupSet(), want) {
		// The saga stores the key alongside the memberships: a young user
		// created for these very grants, in fewer groups than they need,
		// is another request's provision still joining them.
		young := s.cfg.Now().Sub(aws.ToTime(user.CreateDate)) < s.cfg.RepairAfter
		if young && subset(st.groupSet(), groups) && userTag(user, TagGrants) == grantsFingerprint(in.Request.Grants) {
			return nil, &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is being provisioned by another request", aws.ToString(user.UserName))}, true
		}
		return nil, conflictGrants(aws.ToString(user.UserName)), true
	}
	return s.result(user, in.Request.Grants, groups, st.secret.AccessKeyID, st.secret.ARN, false), nil, true
}

// userChanging answers for a user that vanished while this request read
// it: another request's compensation deleted it. A retry starts clean.
func userChanging(name string) error {
	return &Error{Kind: KindInProgress, RetryAfter: inProgressRetry, Detail: fmt.Sprintf("user %s is being changed by another request", name)}
}

func conflictGrants(name string) error {
	return &Error{Kind: KindConflict, Detail: fmt.Sprintf("user %s already exists with different grants", name)}
}

func subset(have map[string]bool, groups []GroupRef) bool {
	want := make(map[string]bool, len(groups))
	for _, g := range groups {
		want[g.Name] = true
	}
	for n := range have {
		if !want[n] {
			return false
		}
	}
	return true
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
