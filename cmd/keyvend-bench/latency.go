package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/keyvend/keyvend/pkg/credential"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// latencyRun is one pass of the latency benchmark at one added delay.
type latencyRun struct {
	Delay time.Duration

	// Grant mode policy (the default).
	Policy            []time.Duration // provision, new user
	PolicySequential  []time.Duration // the same flow, one call at a time
	PolicyDeprovision []time.Duration // deprovision of the Policy users

	// Grant mode group.
	Existing    []time.Duration // provision, new user, existing group
	NewGroups   []time.Duration // provision, new user, new group
	Sequential  []time.Duration // the existing-group flow, one call at a time
	Deprovision []time.Duration // deprovision of the Existing users (their group keeps members)
	LastMember  []time.Duration // deprovision of the NewGroups users, each its group's last member
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	// nearest rank
	k := int(p/100*float64(len(s)) + 0.999999)
	if k < 1 {
		k = 1
	}
	if k > len(s) {
		k = len(s)
	}
	return s[k-1]
}

// timed sends one request through the handler of grant mode mode, appends
// how long it took to *into, and fails unless it answered want.
func timed(ctx context.Context, st *stack, into *[]time.Duration, what string, mode grants.Mode, method, path, body string, want int) error {
	start := time.Now()
	code, resp := st.do(ctx, mode, method, path, body)
	*into = append(*into, time.Since(start))
	return must(what, code, resp, want)
}

// measureLatency runs, for each delay in turn within every iteration (so
// all delays and both grant modes see the same machine, whatever else runs
// on it), n times: in grant mode policy, a provision, the same provision
// by the sequential reference flow and the first user's deprovision; then
// the same in grant mode group with a group that exists. Then, newGroups
// times at each delay, a grant mode group provision with a new group and
// that user's deprovision (the group's last member: its cleanup). All
// through the handlers and the proxy that adds the delay to every AWS
// call. It returns one run per delay.
func measureLatency(ctx context.Context, st *stack, delays []time.Duration, n, newGroups int, progress func(string)) ([]*latencyRun, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	runs := make([]*latencyRun, len(delays))
	for i, d := range delays {
		runs[i] = &latencyRun{Delay: d}
	}
	const shared = "shared.example.com"
	// Warm up: creates the shared group and the services' connections.
	st.proxy.SetDelay(0)
	for i := range 3 {
		for _, mode := range grantModes {
			code, body := st.do(ctx, mode, http.MethodPost, "/v1/users", createBody(fmt.Sprintf("warm-%s-%d", mode, i), shared))
			if err := must("warm-up provision", code, body, http.StatusCreated); err != nil {
				return nil, err
			}
			if err := sequentialProvision(ctx, st, mode, fmt.Sprintf("warmseq-%s-%d", mode, i), shared); err != nil {
				return nil, err
			}
		}
	}
	// Each user is deprovisioned right after it was provisioned (and the
	// reference flow's user removed, without delay and unmeasured), so the
	// shared group keeps a handful of members (the warm-up users): moto
	// ignores GetGroup's MaxItems and answers with every member, slower the
	// more there are, which real IAM does not.
	type flow struct {
		mode                  grants.Mode
		prov, seq, deprov     func(*latencyRun) *[]time.Duration
		userPrefix, seqPrefix string
	}
	flows := []flow{
		{grants.Policy, func(r *latencyRun) *[]time.Duration { return &r.Policy }, func(r *latencyRun) *[]time.Duration { return &r.PolicySequential },
			func(r *latencyRun) *[]time.Duration { return &r.PolicyDeprovision }, "latp", "seqp"},
		{grants.Group, func(r *latencyRun) *[]time.Duration { return &r.Existing }, func(r *latencyRun) *[]time.Duration { return &r.Sequential },
			func(r *latencyRun) *[]time.Duration { return &r.Deprovision }, "latg", "seqg"},
	}
	for i := range n {
		for j, d := range delays {
			run := runs[j]
			for _, f := range flows {
				st.proxy.SetDelay(d)
				user := fmt.Sprintf("%s-%d-%03d", f.userPrefix, j, i)
				if err := timed(ctx, st, f.prov(run), "provision "+user, f.mode, http.MethodPost, "/v1/users", createBody(user, shared), http.StatusCreated); err != nil {
					return nil, err
				}
				seqUser := fmt.Sprintf("%s-%d-%03d", f.seqPrefix, j, i)
				start := time.Now()
				if err := sequentialProvision(ctx, st, f.mode, seqUser, shared); err != nil {
					return nil, err
				}
				*f.seq(run) = append(*f.seq(run), time.Since(start))
				if err := timed(ctx, st, f.deprov(run), "deprovision "+user, f.mode, http.MethodDelete, "/v1/users/"+user, "", http.StatusNoContent); err != nil {
					return nil, err
				}
				st.proxy.SetDelay(0)
				code, body := st.do(ctx, f.mode, http.MethodDelete, "/v1/users/"+seqUser, "")
				if err := must("remove "+seqUser, code, body, http.StatusNoContent); err != nil {
					return nil, err
				}
				if err := st.emptyTable(ctx); err != nil {
					return nil, err
				}
			}
		}
		if (i+1)%25 == 0 {
			progress(fmt.Sprintf("latency: %d/%d rounds of provision, reference and deprovision at each delay in both grant modes", i+1, n))
		}
	}
	for i := range newGroups {
		for j, d := range delays {
			st.proxy.SetDelay(d)
			user := fmt.Sprintf("ng-%d-%03d", j, i)
			if err := timed(ctx, st, &runs[j].NewGroups, "provision "+user, grants.Group, http.MethodPost, "/v1/users", createBody(user, fmt.Sprintf("new-%d-%03d.example.com", j, i)), http.StatusCreated); err != nil {
				return nil, err
			}
			if err := timed(ctx, st, &runs[j].LastMember, "deprovision "+user, grants.Group, http.MethodDelete, "/v1/users/"+user, "", http.StatusNoContent); err != nil {
				return nil, err
			}
			st.proxy.SetDelay(0)
			if err := st.emptyTable(ctx); err != nil {
				return nil, err
			}
		}
	}
	progress(fmt.Sprintf("latency: %d provisions with a new group (grant mode group), and their deprovisions, at each delay", newGroups))
	st.proxy.SetDelay(0)
	return runs, nil
}

// sequentialProvision is the reference: the calls of a provision in grant
// mode mode (into an existing group in grant mode group), each waiting for
// the one before (no concurrency), with what keyvend's own calls carry
// (path, boundary, tags: the deprovision that removes the user takes it
// for keyvend's).
func sequentialProvision(ctx context.Context, st *stack, mode grants.Mode, user, bucket string) error {
	g := policy.Grant{Bucket: bucket, Access: policy.ReadWrite}
	createUser := func() error {
		_, err := st.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: &user, Path: aws.String("/keyvend/"), PermissionsBoundary: aws.String(benchBoundary),
			Tags: []iamtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}}})
		if err != nil {
			return fmt.Errorf("sequential CreateUser: %w", err)
		}
		return nil
	}
	var key *iamtypes.AccessKey
	createKey := func() error {
		out, err := st.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &user})
		if err != nil {
			return fmt.Errorf("sequential CreateAccessKey: %w", err)
		}
		key = out.AccessKey
		return nil
	}
	storeKey := func() error {
		_, err := st.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("keyvend/users/" + user), SecretString: aws.String(credential.Of(key).JSON()),
			Tags: []smtypes.Tag{{Key: aws.String(provision.TagManagedBy), Value: aws.String("keyvend")}, {Key: aws.String(provision.TagUser), Value: aws.String(user)}}})
		if err != nil {
			return fmt.Errorf("sequential CreateSecret: %w", err)
		}
		return nil
	}
	var steps []func() error
	if mode == grants.Policy {
		// CreateUser, CreateAccessKey, PutUserPolicy, CreateSecret
		doc, err := policy.UserDocument("aws", []policy.Grant{g})
		if err != nil {
			return err
		}
		putPolicy := func() error {
			_, err := st.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &user, PolicyName: aws.String(policy.UserPolicyName), PolicyDocument: &doc})
			if err != nil {
				return fmt.Errorf("sequential PutUserPolicy: %w", err)
			}
			return nil
		}
		steps = []func() error{createUser, createKey, putPolicy, storeKey}
	} else {
		// GetGroup, PutGroupPolicy, CreateUser, AddUserToGroup,
		// CreateAccessKey, CreateSecret
		group := policy.GroupName(g)
		doc, err := policy.Document("aws", g)
		if err != nil {
			return err
		}
		getGroup := func() error {
			if _, err := st.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &group, MaxItems: aws.Int32(1)}); err != nil {
				return fmt.Errorf("sequential GetGroup: %w", err)
			}
			return nil
		}
		putPolicy := func() error {
			_, err := st.iam.PutGroupPolicy(ctx, &iam.PutGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &doc})
			if err != nil {
				return fmt.Errorf("sequential PutGroupPolicy: %w", err)
			}
			return nil
		}
		join := func() error {
			if _, err := st.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &user, GroupName: &group}); err != nil {
				return fmt.Errorf("sequential AddUserToGroup: %w", err)
			}
			return nil
		}
		steps = []func() error{getGroup, putPolicy, createUser, join, createKey, storeKey}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
