package provision

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/caller"
)

// HalfMadeAfter is how old a half-made user must be before the reaper
// repairs or removes it: far longer than any request takes.
const HalfMadeAfter = 15 * time.Minute

// ReapReport is what one reaper run did, as JSON.
type ReapReport struct {
	StartedAt        time.Time   `json:"started_at"`
	Checked          int         `json:"checked"`
	Expired          []string    `json:"expired_deleted"`
	HalfMadeDeleted  []string    `json:"half_made_deleted"`
	StrayKeysDeleted []KeyOfUser `json:"stray_keys_deleted"`
	Repaired         []string    `json:"repaired"`
	Errors           []ReapError `json:"errors"`
}

// KeyOfUser names one access key.
type KeyOfUser struct {
	User        string `json:"user"`
	AccessKeyID string `json:"access_key_id"`
}

// ReapError is a user the run could not handle; the next run tries again.
type ReapError struct {
	User  string `json:"user"`
	Error string `json:"error"`
}

// Reap goes over every managed user once:
//   - past its expiry → deprovisioned (secret scheduled for deletion);
//   - older than HalfMadeAfter and without a secret → deprovisioned;
//   - older than HalfMadeAfter with keys that are not in its secret →
//     those keys deleted, and if the secret holds no live key, a new key
//     stored in it (repaired); decided under the user's repair lock, so a
//     rotation's new key is never taken for a stray one (a user a request
//     holds the lock on is left for the next run).
//
// Running it again changes nothing more. Errors on one user do not stop
// the others; they are in the report.
func (s *Service) Reap(ctx context.Context) (*ReapReport, error) {
	rep := &ReapReport{StartedAt: s.cfg.Now().UTC(), Expired: []string{}, HalfMadeDeleted: []string{},
		StrayKeysDeleted: []KeyOfUser{}, Repaired: []string{}, Errors: []ReapError{}}
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	p := iam.NewListUsersPaginator(s.iam, &iam.ListUsersInput{PathPrefix: &s.cfg.UserPath})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			wg.Wait()
			return rep, wrapf(err, "list users under %s", s.cfg.UserPath)
		}
		for _, u := range page.Users {
			if aws.ToString(u.Path) != s.cfg.UserPath {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				s.reapOne(ctx, u, rep, &mu)
			}()
		}
	}
	wg.Wait()
	return rep, nil
}

func (s *Service) reapOne(ctx context.Context, u iamtypes.User, rep *ReapReport, mu *sync.Mutex) {
	name := aws.ToString(u.UserName)
	fail := func(err error) {
		mu.Lock()
		rep.Errors = append(rep.Errors, ReapError{User: name, Error: err.Error()})
		mu.Unlock()
	}
	tags, err := s.iam.ListUserTags(ctx, &iam.ListUserTagsInput{UserName: &name})
	if isCode(err, codeNoSuchEntity) {
		return
	}
	if err != nil {
		fail(wrapf(err, "list tags of %s", name))
		return
	}
	u.Tags = tags.Tags
	if !s.managedUser(&u) {
		return
	}
	mu.Lock()
	rep.Checked++
	mu.Unlock()
	now := s.cfg.Now()
	if at := expiryOf(u.Tags); at != nil && !now.Before(*at) {
		if err := s.reapDelete(ctx, name, "reap-expired"); err != nil {
			fail(err)
			return
		}
		mu.Lock()
		rep.Expired = append(rep.Expired, name)
		mu.Unlock()
		return
	}
	if now.Sub(aws.ToTime(u.CreateDate)) < HalfMadeAfter {
		return
	}
	st, err := s.readUserState(ctx, name, keyAndSecret)
	if err != nil {
		fail(err)
		return
	}
	if st.secret == nil {
		if err := s.reapDelete(ctx, name, "reap-half-made"); err != nil {
			fail(err)
			return
		}
		mu.Lock()
		rep.HalfMadeDeleted = append(rep.HalfMadeDeleted, name)
		mu.Unlock()
		return
	}
	if keep := st.secretKey(); keep != nil && len(st.keys) == 1 {
		return // complete: its only key is the one in its secret
	}
	// A rotation or repair creates its new key before it stores it in the
	// secret, holding the user's repair lock: a key outside the secret may
	// be that one. Decide what is stray only holding the lock, on a state
	// read under it; if another request holds it, the next run looks again.
	release, err := s.lockRepair(ctx, name)
	if KindOf(err) == KindInProgress {
		s.log.InfoContext(ctx, "reaper: user is being changed by a request; left for the next run", "user", name)
		return
	}
	if err != nil {
		fail(err)
		return
	}
	defer release()
	if st, err = s.readUserState(ctx, name, keyAndSecret); err != nil {
		fail(err)
		return
	}
	if st.secret == nil {
		return // deleted meanwhile; the next run sees what is left
	}
	keep := st.secretKey()
	var stray []KeyOfUser
	for _, k := range st.keys {
		if keep == nil || aws.ToString(k.AccessKeyId) != aws.ToString(keep.AccessKeyId) {
			stray = append(stray, KeyOfUser{User: name, AccessKeyID: aws.ToString(k.AccessKeyId)})
		}
	}
	if len(stray) > 0 {
		if err := s.deleteKeysExcept(ctx, name, st.keys, keep); err != nil {
			fail(err)
			return
		}
		mu.Lock()
		rep.StrayKeysDeleted = append(rep.StrayKeysDeleted, stray...)
		mu.Unlock()
	}
	if keep == nil {
		if err := s.restock(ctx, name); err != nil {
			fail(err)
			return
		}
		mu.Lock()
		rep.Repaired = append(rep.Repaired, name)
		mu.Unlock()
	}
}

// restock puts a new key in the secret of a user whose secret holds no
// live key, if the secret is keyvend's for that user (ownSecret). The
// caller holds the user's repair lock.
func (s *Service) restock(ctx context.Context, name string) error {
	if _, err := s.ownSecret(ctx, name); err != nil && !isCode(err, codeResourceNotFound) {
		return err
	}
	out, err := s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
	if err != nil {
		return wrapf(err, "create access key for %s", name)
	}
	if _, err := s.putKey(ctx, Input{RequestID: "reaper"}, name, out.AccessKey); err != nil {
		s.compensate(ctx, &saga{user: name, keyID: aws.ToString(out.AccessKey.AccessKeyId)}, err)
		return err
	}
	return nil
}

// ReaperPrincipal is who the audit log names for the reaper's changes.
const ReaperPrincipal = "keyvend:reaper"

func (s *Service) reapDelete(ctx context.Context, name, action string) (err error) {
	defer s.audit(ctx, time.Now(), action, caller.Principal{ID: ReaperPrincipal}, "reaper", name, nil, &err)
	return s.deprovision(ctx, name, false)
}
