package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Input is one create request with who made it.
type Input struct {
	Principal caller.Principal
	RequestID string
	Request   CreateRequest

	expiresAt    *time.Time // decided from the request and the rules
	expiryCapped bool
}

// Result describes a vended user. It never holds the secret access key.
type Result struct {
	// Created is true when this request created the access key (HTTP 201),
	// false when it found the same user already complete (HTTP 200).
	Created  bool `json:"-"`
	Repaired bool `json:"repaired,omitempty"`

	User              string         `json:"user"`
	UserARN           string         `json:"user_arn"`
	Path              string         `json:"path"`
	Grants            []policy.Grant `json:"grants"`
	Groups            []GroupRef     `json:"groups"`
	AccessKeyID       string         `json:"access_key_id"`
	SecretName        string         `json:"secret_name"`
	SecretARN         string         `json:"secret_arn"`
	CredentialProcess string         `json:"credential_process"`
	ExpiresAt         *time.Time     `json:"expires_at,omitempty"`
	// ExpiryCapped is true when a rule's max_ttl shortened the requested expiry.
	ExpiryCapped bool `json:"expiry_capped,omitempty"`
	Readiness
}

// GroupRef is a keyvend group and the grant it carries.
type GroupRef struct {
	Name  string       `json:"name"`
	ARN   string       `json:"arn"`
	Grant policy.Grant `json:"grant"`
}

type desiredGroup struct {
	name  string
	doc   string
	grant policy.Grant
}

func desiredGroups(partition string, grants []policy.Grant) ([]desiredGroup, error) {
	out := make([]desiredGroup, 0, len(grants))
	for _, g := range grants {
		doc, err := policy.Document(partition, g)
		if err != nil {
			return nil, err
		}
		out = append(out, desiredGroup{name: policy.GroupName(g), doc: doc, grant: g})
	}
	return out, nil
}

// Create provisions the user the request describes, or returns the same
// user if an identical request already did. The saga, in three round trips:
//
//  1. CreateUser (the cross-process claim on the name) ‖ GetGroup for each
//     grant
//  2. CreateAccessKey ‖ per group: PutGroupPolicy if it exists, CreateGroup
//     if it does not
//  3. store the key in the user's secret ‖ AddUserToGroup for each group ‖
//     PutGroupPolicy on each group this request created
//
// A failure after step 1 is compensated (rollback.go): the key is deleted,
// memberships removed and the user deleted, so a retry starts clean.
func (s *Service) Create(ctx context.Context, in Input) (res *Result, err error) {
	start := time.Now()
	defer func() {
		s.audit(ctx, start, "create", in.Principal, in.RequestID, in.Request.User, in.Request.Grants, &err)
	}()
	req := in.Request
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := s.rules.DecideIn(in.Principal.Names(), in.Principal.Channel, authz.Create, req.Grants); err != nil {
		return nil, &Error{Kind: KindForbidden, Detail: err.Error()}
	}
	expiry, capped, err := s.expiry(in)
	if err != nil {
		return nil, err
	}
	in.expiresAt, in.expiryCapped = expiry, capped
	want, err := desiredGroups(s.partition, req.Grants)
	if err != nil {
		return nil, err
	}
	unlock := s.locks.Lock(strings.ToLower(req.User))
	defer unlock()

	groups := s.setupGroups(ctx, want, nil)
	user, err := s.createUser(ctx, in)
	switch {
	case isCode(err, codeEntityExists):
		refs, gerr := groups.wait()
		if gerr != nil {
			return nil, gerr
		}
		return s.existing(ctx, in, refs)
	case err != nil:
		_, _ = groups.wait() // let group setup finish before answering
		return nil, fmt.Errorf("create IAM user %s: %w", req.User, err)
	}
	return s.finish(ctx, in, &saga{user: req.User, createdUser: true}, user, groups, nil)
}

// finish completes a user that exists, on the critical path
// CreateAccessKey → store the key, while the groups get ready (setupGroups)
// and the user joins the ones not in have, alongside the store:
//
//	CreateAccessKey ───────────────┐
//	group setup (already running) ─┴→ store key ‖ AddUserToGroup… ‖ (policies of new groups)
//
// The key is stored, and the user joins a group, only once every group is
// ready: an existing group carries keyvend's policy again, a new one
// exists (it has no policy yet, so it grants nothing more). The answer
// waits for every policy. On any failure it compensates sg.
func (s *Service) finish(ctx context.Context, in Input, sg *saga, user *iamtypes.User, groups *groupSetup, have map[string]bool) (*Result, error) {
	name := aws.ToString(user.UserName)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stepErr error
	)
	fail := func(err error) {
		mu.Lock()
		if stepErr == nil {
			stepErr = err
		}
		mu.Unlock()
	}
	keyDone := make(chan *iamtypes.AccessKey, 1)
	go func() {
		out, err := s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
		if err != nil {
			fail(fmt.Errorf("create access key for %s: %w", name, err))
			keyDone <- nil
			return
		}
		mu.Lock()
		sg.keyID = aws.ToString(out.AccessKey.AccessKeyId)
		mu.Unlock()
		keyDone <- out.AccessKey
	}()
	refs, gerr := groups.whenReady()
	if gerr != nil {
		fail(gerr)
	} else {
		for _, g := range refs {
			if have[g.Name] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &name, GroupName: aws.String(g.Name)})
				if err != nil {
					fail(fmt.Errorf("add user %s to group %s: %w", name, g.Name, err))
					return
				}
				mu.Lock()
				sg.joined = append(sg.joined, g.Name)
				mu.Unlock()
			}()
		}
	}
	key := <-keyDone
	var secretARN string
	if key != nil && gerr == nil {
		arn, err := s.storeKey(ctx, in, name, key)
		if err != nil {
			fail(err)
		} else {
			secretARN = arn
			mu.Lock()
			sg.storedSecret = true
			mu.Unlock()
		}
	}
	wg.Wait()
	if _, err := groups.wait(); err != nil && gerr == nil {
		fail(err)
	}
	if stepErr != nil {
		s.compensate(ctx, sg, stepErr)
		return nil, stepErr
	}
	r := s.result(user, in.Request.Grants, refs, sg.keyID, secretARN, true)
	r.ExpiryCapped = in.expiryCapped
	if in.Request.Wait {
		r.Readiness = s.checkReady(ctx, key, aws.ToString(user.Arn))
	}
	return r, nil
}

func (s *Service) result(user *iamtypes.User, grants []policy.Grant, groups []GroupRef, keyID, secretARN string, created bool) *Result {
	name := aws.ToString(user.UserName)
	return &Result{
		Created:           created,
		User:              name,
		UserARN:           aws.ToString(user.Arn),
		Path:              aws.ToString(user.Path),
		Grants:            grants,
		Groups:            groups,
		AccessKeyID:       keyID,
		SecretName:        s.SecretName(name),
		SecretARN:         secretARN,
		CredentialProcess: s.credentialProcess(secretARN),
		ExpiresAt:         expiryOf(user.Tags),
	}
}

// credentialProcess is the ~/.aws/config line that makes the AWS CLI and
// SDKs read the key from the secret. The reader needs
// secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key).
func (s *Service) credentialProcess(secretARN string) string {
	line := "credential_process = aws secretsmanager get-secret-value --secret-id " + secretARN + " --query SecretString --output text"
	if s.cfg.Region != "" {
		line += " --region " + s.cfg.Region
	}
	return line
}

func (s *Service) createUser(ctx context.Context, in Input) (*iamtypes.User, error) {
	now := s.cfg.Now().UTC().Format(time.RFC3339)
	tags := []iamtypes.Tag{
		{Key: aws.String(TagManagedBy), Value: aws.String(managedByValue)},
		{Key: aws.String(TagRequester), Value: aws.String(tagValue(in.Principal.ID))},
		{Key: aws.String(TagReason), Value: aws.String(tagValue(in.Request.Reason))},
		{Key: aws.String(TagRequestID), Value: aws.String(tagValue(in.RequestID))},
		{Key: aws.String(TagCreatedAt), Value: aws.String(now)},
		{Key: aws.String(TagGrants), Value: aws.String(grantsFingerprint(in.Request.Grants))},
	}
	if in.expiresAt != nil {
		tags = append(tags, iamtypes.Tag{Key: aws.String(TagExpiresAt), Value: aws.String(in.expiresAt.UTC().Format(time.RFC3339))})
	}
	out, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{
		UserName:            aws.String(in.Request.User),
		Path:                aws.String(s.cfg.UserPath),
		PermissionsBoundary: aws.String(s.cfg.BoundaryARN),
		Tags:                tags,
	})
	if err != nil {
		return nil, err
	}
	return out.User, nil
}

// grantsFingerprint identifies a set of grants by their groups: 32 hex
// digits of the SHA-256 of the sorted group names.
func grantsFingerprint(grants []policy.Grant) string {
	names := make([]string, len(grants))
	for i, g := range grants {
		names[i] = policy.GroupName(g)
	}
	sort.Strings(names)
	sum := sha256.Sum256([]byte(strings.Join(names, "\n")))
	return hex.EncodeToString(sum[:16])
}

// ensureGroups makes every wanted group exist under the keyvend path with
// exactly its desired inline policy, concurrently. A group of that name
// outside the keyvend path is never touched. known are groups already
// read under the keyvend path (a user's, from ListGroupsForUser): they are
// not read again.
func (s *Service) ensureGroups(ctx context.Context, want []desiredGroup, known map[string]iamtypes.Group) ([]GroupRef, error) {
	return s.setupGroups(ctx, want, known).wait()
}

// groupSetup is the group side of a provision, running alongside the user
// side. Each group is resolved — read, created when missing, its path
// checked — and then gets its policy put. It is ready (members may join,
// the key may be stored) once every existing group carries its policy
// again and every group this request created exists: a new group has no
// policy yet, so joining it grants nothing more than the grant. It is done
// once every policy is put.
type groupSetup struct {
	ready, done       chan struct{}
	refs              []GroupRef
	readyErr, doneErr error
}

// setupGroups starts the setup of want's groups, each concurrently; known
// are groups already read under the keyvend path (see ensureGroups).
func (s *Service) setupGroups(ctx context.Context, want []desiredGroup, known map[string]iamtypes.Group) *groupSetup {
	gs := &groupSetup{ready: make(chan struct{}), done: make(chan struct{}), refs: make([]GroupRef, len(want))}
	readyErrs := make([]error, len(want))
	doneErrs := make([]error, len(want))
	var readyWG, doneWG sync.WaitGroup
	for i, g := range want {
		readyWG.Add(1)
		doneWG.Add(1)
		go func() {
			defer doneWG.Done()
			markReady := sync.OnceFunc(readyWG.Done)
			defer markReady()
			var (
				ref     GroupRef
				created bool
				err     error
			)
			if k, ok := known[g.name]; ok && aws.ToString(k.Path) == s.cfg.UserPath {
				ref = GroupRef{Name: g.name, ARN: aws.ToString(k.Arn), Grant: g.grant}
			} else {
				ref, created, err = s.resolveGroup(ctx, g)
			}
			gs.refs[i] = ref
			if err != nil {
				readyErrs[i], doneErrs[i] = err, err
				return
			}
			if created {
				markReady()
			}
			_, err = s.iam.PutGroupPolicy(ctx, &iam.PutGroupPolicyInput{
				GroupName:      &g.name,
				PolicyName:     aws.String(policy.InlinePolicyName),
				PolicyDocument: &g.doc,
			})
			if err != nil {
				err = fmt.Errorf("put policy on group %s: %w", g.name, err)
				doneErrs[i] = err
				if !created {
					readyErrs[i] = err
				}
			}
		}()
	}
	go func() {
		readyWG.Wait()
		gs.readyErr = errors.Join(readyErrs...)
		close(gs.ready)
	}()
	go func() {
		doneWG.Wait()
		<-gs.ready
		gs.doneErr = errors.Join(doneErrs...)
		close(gs.done)
	}()
	return gs
}

// setupDone is a groupSetup of groups that are already set up.
func setupDone(refs []GroupRef) *groupSetup {
	gs := &groupSetup{ready: make(chan struct{}), done: make(chan struct{}), refs: refs}
	close(gs.ready)
	close(gs.done)
	return gs
}

// whenReady waits until members may join the groups and the key may be
// stored.
func (gs *groupSetup) whenReady() ([]GroupRef, error) {
	<-gs.ready
	if gs.readyErr != nil {
		return nil, firstErr(gs.readyErr)
	}
	return gs.refs, nil
}

// wait waits until every group is set up, policies included.
func (gs *groupSetup) wait() ([]GroupRef, error) {
	<-gs.done
	if gs.doneErr != nil {
		return nil, firstErr(gs.doneErr)
	}
	return gs.refs, nil
}

// firstErr unwraps an errors.Join to its first error, so callers see the
// failing step's own error (and its Kind).
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}

// resolveGroup finds g's group under the keyvend path, creating it when it
// does not exist; created reports that this request created it.
func (s *Service) resolveGroup(ctx context.Context, g desiredGroup) (ref GroupRef, created bool, err error) {
	ref = GroupRef{Name: g.name, Grant: g.grant}
	got, err := s.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &g.name, MaxItems: aws.Int32(1)})
	var group *iamtypes.Group
	switch {
	case err == nil:
		group = got.Group
	case isCode(err, codeNoSuchEntity):
		out, cerr := s.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: &g.name, Path: &s.cfg.UserPath})
		switch {
		case cerr == nil:
			group, created = out.Group, true
		case isCode(cerr, codeEntityExists): // another request created it just now
			again, gerr := s.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &g.name, MaxItems: aws.Int32(1)})
			if gerr != nil {
				return ref, false, fmt.Errorf("read group %s: %w", g.name, gerr)
			}
			group = again.Group
		default:
			return ref, false, fmt.Errorf("create group %s: %w", g.name, cerr)
		}
	default:
		return ref, false, fmt.Errorf("read group %s: %w", g.name, err)
	}
	if p := aws.ToString(group.Path); p != s.cfg.UserPath {
		return ref, false, &Error{Kind: KindConflict, Detail: fmt.Sprintf("IAM group %s exists under path %s, not %s; keyvend will not use it", g.name, p, s.cfg.UserPath)}
	}
	ref.ARN = aws.ToString(group.Arn)
	return ref, created, nil
}
