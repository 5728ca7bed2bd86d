package grants

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Setup is the grant side of a provision, running alongside its key side
// (CreateAccessKey → store the key), so that the grants cost no round trip
// of their own:
//
//   - grant mode policy: Attach puts the user policy; the key may be stored
//     once it is in place.
//   - grant mode group: Prepare resolves each group right away (read it,
//     create it when missing, put its policy), before the user exists;
//     the key may be stored once every existing group carries its policy
//     again and every new group exists (a new group has no policy yet, so
//     joining it grants nothing more than the grant); Attach then joins
//     the user to the groups it is not in, alongside the store.
type Setup struct {
	c    *Carrier
	want []policy.Grant

	// group mode: the groups' own setup
	groupsReady, groupsDone chan struct{}
	refs                    []GroupRef
	groupsReadyErr          error
	groupsDoneErr           error

	// Attach's part
	attached          chan struct{}
	ready, done       chan struct{}
	readyErr, doneErr error
}

// Prepare starts giving want to a user about to be made (or repaired).
// In grant mode group it starts resolving the groups now.
func (c *Carrier) Prepare(ctx context.Context, want []policy.Grant) *Setup {
	return c.prepare(ctx, want, nil)
}

// prepare is Prepare knowing some groups already: those in known (the
// user's own, read by Read) are not read again, only their policy put.
func (c *Carrier) prepare(ctx context.Context, want []policy.Grant, known []GroupRef) *Setup {
	s := &Setup{c: c, want: want, attached: make(chan struct{}), ready: make(chan struct{}), done: make(chan struct{})}
	if c.cfg.Mode == Group {
		s.startGroups(ctx, known)
	}
	return s
}

// Attach gives the grants to user, which exists now; have is what it holds
// already (nil for a user just created). Call it once.
func (s *Setup) Attach(ctx context.Context, user string, have *Held) {
	close(s.attached)
	if s.c.cfg.Mode != Group {
		go func() {
			err := s.c.putUserPolicy(ctx, user, s.want)
			s.readyErr, s.doneErr = err, err
			close(s.ready)
			close(s.done)
		}()
		return
	}
	member := map[string]bool{}
	if have != nil {
		for _, g := range have.Groups {
			member[g.Name] = true
		}
	}
	go func() {
		<-s.groupsReady
		s.readyErr = s.groupsReadyErr
		close(s.ready)
		var errs []error
		if s.readyErr == nil {
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, g := range s.refs {
				if member[g.Name] {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.c.join(ctx, user, g); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
		<-s.groupsDone
		switch {
		case s.readyErr != nil:
			s.doneErr = s.readyErr
		case len(errs) > 0:
			s.doneErr = errs[0]
		default:
			s.doneErr = s.groupsDoneErr
		}
		close(s.done)
	}()
}

// Ready waits until the key may be stored: the user will hold no more
// than the grants.
func (s *Setup) Ready() error {
	<-s.ready
	return s.readyErr
}

// Wait waits until everything is done (memberships, new groups' policies)
// and reports the first failure. Without Attach it waits for the groups'
// own setup only (a provision that found the user existing).
func (s *Setup) Wait() error {
	select {
	case <-s.attached:
		<-s.done
		return s.doneErr
	default:
	}
	if s.c.cfg.Mode == Group {
		<-s.groupsDone
		return s.groupsDoneErr
	}
	return nil
}

// Groups are the grant groups of the setup (grant mode group), once Ready.
func (s *Setup) Groups() []GroupRef { return s.refs }

func (c *Carrier) putUserPolicy(ctx context.Context, user string, want []policy.Grant) error {
	doc, err := policy.UserDocument(c.cfg.Partition, want)
	if err != nil {
		return err
	}
	_, err = c.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName), PolicyDocument: &doc})
	if err != nil {
		return fmt.Errorf("put policy %s on user %s: %w", policy.UserPolicyName, user, err)
	}
	return nil
}

// startGroups resolves each wanted group concurrently: read, created when
// missing, its path checked, then its policy put. A known group (already
// read under the path) is ready at once and only gets its policy again.
func (s *Setup) startGroups(ctx context.Context, known []GroupRef) {
	byName := map[string]GroupRef{}
	for _, k := range known {
		byName[k.Name] = k
	}
	s.groupsReady, s.groupsDone = make(chan struct{}), make(chan struct{})
	s.refs = make([]GroupRef, len(s.want))
	readyErrs := make([]error, len(s.want))
	doneErrs := make([]error, len(s.want))
	var readyWG, doneWG sync.WaitGroup
	for i, g := range s.want {
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
			if k, ok := byName[policy.GroupName(g)]; ok && k.ARN != "" {
				ref = GroupRef{Name: k.Name, ARN: k.ARN, Grant: g}
			} else {
				ref, created, err = s.c.resolveGroup(ctx, g)
			}
			s.refs[i] = ref
			if err != nil {
				readyErrs[i], doneErrs[i] = err, err
				return
			}
			if created {
				markReady()
			}
			if err := s.c.putGroupPolicy(ctx, ref.Name, g); err != nil {
				doneErrs[i] = err
				if !created {
					readyErrs[i] = err
				}
			}
		}()
	}
	go func() {
		readyWG.Wait()
		s.groupsReadyErr = firstErr(errors.Join(readyErrs...))
		close(s.groupsReady)
	}()
	go func() {
		doneWG.Wait()
		<-s.groupsReady
		s.groupsDoneErr = firstErr(errors.Join(doneErrs...))
		close(s.groupsDone)
	}()
}

// join adds user to the grant group g. A group that vanished since it was
// resolved — deleted by a request whose user was its last member
// (DropEmpty) — is made again, with its policy, and joined.
func (c *Carrier) join(ctx context.Context, user string, g GroupRef) error {
	_, err := c.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &user, GroupName: aws.String(g.Name)})
	if awserr.Is(err, "NoSuchEntity") {
		if _, _, rerr := c.resolveGroup(ctx, g.Grant); rerr != nil {
			return rerr
		}
		if perr := c.putGroupPolicy(ctx, g.Name, g.Grant); perr != nil {
			return perr
		}
		_, err = c.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &user, GroupName: aws.String(g.Name)})
	}
	if err != nil {
		return fmt.Errorf("add user %s to group %s: %w", user, g.Name, err)
	}
	return nil
}

func (c *Carrier) putGroupPolicy(ctx context.Context, group string, g policy.Grant) error {
	doc, err := policy.Document(c.cfg.Partition, g)
	if err != nil {
		return err
	}
	_, err = c.iam.PutGroupPolicy(ctx, &iam.PutGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &doc})
	if err != nil {
		return fmt.Errorf("put policy on group %s: %w", group, err)
	}
	return nil
}

// ConflictError is a grant group of keyvend's name that keyvend will not
// use (it is outside the user path).
type ConflictError struct{ Detail string }

func (e *ConflictError) Error() string { return e.Detail }

// resolveGroup finds g's group under the path, creating it when it does
// not exist; created reports that this call created it. A group of that
// name outside the path is never touched (*ConflictError); IAM's group
// quota is ErrGroupQuota.
func (c *Carrier) resolveGroup(ctx context.Context, g policy.Grant) (ref GroupRef, created bool, err error) {
	name := policy.GroupName(g)
	ref = GroupRef{Name: name, Grant: g}
	got, err := c.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &name, MaxItems: aws.Int32(1)})
	var group *iamtypes.Group
	switch {
	case err == nil:
		group = got.Group
	case awserr.Is(err, "NoSuchEntity"):
		out, cerr := c.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: &name, Path: &c.cfg.Path})
		switch {
		case cerr == nil:
			group, created = out.Group, true
		case awserr.Is(cerr, "EntityAlreadyExists"): // another request created it just now
			again, gerr := c.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &name, MaxItems: aws.Int32(1)})
			if gerr != nil {
				return ref, false, fmt.Errorf("read group %s: %w", name, gerr)
			}
			group = again.Group
		case awserr.Is(cerr, "LimitExceeded"):
			return ref, false, fmt.Errorf("create group %s: %w: %w", name, ErrGroupQuota, cerr)
		default:
			return ref, false, fmt.Errorf("create group %s: %w", name, cerr)
		}
	default:
		return ref, false, fmt.Errorf("read group %s: %w", name, err)
	}
	if p := aws.ToString(group.Path); p != c.cfg.Path {
		return ref, false, &ConflictError{Detail: fmt.Sprintf("IAM group %s exists under path %s, not %s; keyvend will not use it", name, p, c.cfg.Path)}
	}
	ref.ARN = aws.ToString(group.Arn)
	return ref, created, nil
}
