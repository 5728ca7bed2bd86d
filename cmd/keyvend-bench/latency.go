package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
)

// latencyRun is one pass of the latency benchmark at one added delay.
type latencyRun struct {
	Delay       time.Duration
	Existing    []time.Duration // provision, new user, existing group
	NewGroups   []time.Duration // provision, new user, new group
	Sequential  []time.Duration // the existing-group flow, one call at a time
	Deprovision []time.Duration // deprovision of the Existing users
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

// measureLatency measures grant mode group (the service of grant mode
// policy is not measured here yet). It runs, for each delay in turn within every iteration (so
// all delays see the same machine, whatever else runs on it): a provision
// into an existing group, the same provision by the sequential reference
// flow, and the first user's deprovision, n times; then newGroups
// provisions each with a new group. All through the handler and the proxy
// that adds the delay to every AWS call. It returns one run per delay.
func measureLatency(ctx context.Context, st *stack, delays []time.Duration, n, newGroups int, progress func(string)) ([]*latencyRun, error) {
	if err := st.moto.Reset(ctx); err != nil {
		return nil, err
	}
	runs := make([]*latencyRun, len(delays))
	for i, d := range delays {
		runs[i] = &latencyRun{Delay: d}
	}
	const shared = "shared.example.com"
	// Warm up: creates the shared group and the service's connections.
	st.proxy.SetDelay(0)
	for i := range 3 {
		code, body := st.do(ctx, grants.Group, http.MethodPost, "/v1/users", createBody(fmt.Sprintf("warm-%d", i), shared))
		if err := must("warm-up provision", code, body, http.StatusCreated); err != nil {
			return nil, err
		}
		if err := sequentialProvision(ctx, st, fmt.Sprintf("warmseq-%d", i), shared); err != nil {
			return nil, err
		}
	}
	// Each user is deprovisioned right after it was provisioned (and the
	// reference flow's user removed, without delay and unmeasured), so the
	// shared group keeps a handful of members: moto ignores GetGroup's
	// MaxItems and answers with every member, slower the more there are,
	// which real IAM does not.
	for i := range n {
		for j, d := range delays {
			run := runs[j]
			st.proxy.SetDelay(d)
			user := fmt.Sprintf("lat-%d-%03d", j, i)
			start := time.Now()
			code, body := st.do(ctx, grants.Group, http.MethodPost, "/v1/users", createBody(user, shared))
			run.Existing = append(run.Existing, time.Since(start))
			if err := must("provision "+user, code, body, http.StatusCreated); err != nil {
				return nil, err
			}
			seqUser := fmt.Sprintf("seq-%d-%03d", j, i)
			start = time.Now()
			if err := sequentialProvision(ctx, st, seqUser, shared); err != nil {
				return nil, err
			}
			run.Sequential = append(run.Sequential, time.Since(start))
			start = time.Now()
			code, body = st.do(ctx, grants.Group, http.MethodDelete, "/v1/users/"+user, "")
			run.Deprovision = append(run.Deprovision, time.Since(start))
			if err := must("deprovision "+user, code, body, http.StatusNoContent); err != nil {
				return nil, err
			}
			st.proxy.SetDelay(0)
			code, body = st.do(ctx, grants.Group, http.MethodDelete, "/v1/users/"+seqUser, "")
			if err := must("remove "+seqUser, code, body, http.StatusNoContent); err != nil {
				return nil, err
			}
		}
		if (i+1)%25 == 0 {
			progress(fmt.Sprintf("latency: %d/%d rounds of provision, reference and deprovision at each delay", i+1, n))
		}
	}
	for i := range newGroups {
		for j, d := range delays {
			st.proxy.SetDelay(d)
			user := fmt.Sprintf("ng-%d-%03d", j, i)
			start := time.Now()
			code, body := st.do(ctx, grants.Group, http.MethodPost, "/v1/users", createBody(user, fmt.Sprintf("new-%d-%03d.example.com", j, i)))
			runs[j].NewGroups = append(runs[j].NewGroups, time.Since(start))
			if err := must("provision "+user, code, body, http.StatusCreated); err != nil {
				return nil, err
			}
		}
	}
	progress(fmt.Sprintf("latency: %d provisions with a new group at each delay", newGroups))
	st.proxy.SetDelay(0)
	return runs, nil
}

// sequentialProvision is the reference: the calls of a provision into an
// existing group, each waiting for the one before (no concurrency).
func sequentialProvision(ctx context.Context, st *stack, user, bucket string) error {
	g := policy.Grant{Bucket: bucket, Access: policy.ReadWrite}
	group := policy.GroupName(g)
	doc, err := policy.Document("aws", g)
	if err != nil {
		return err
	}
	if _, err := st.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: &group, MaxItems: aws.Int32(1)}); err != nil {
		return fmt.Errorf("sequential GetGroup: %w", err)
	}
	if _, err := st.iam.PutGroupPolicy(ctx, &iam.PutGroupPolicyInput{GroupName: &group, PolicyName: aws.String(policy.InlinePolicyName), PolicyDocument: &doc}); err != nil {
		return fmt.Errorf("sequential PutGroupPolicy: %w", err)
	}
	if _, err := st.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: &user, Path: aws.String("/keyvend/"), PermissionsBoundary: aws.String(benchBoundary),
		Tags: []iamtypes.Tag{{Key: aws.String("keyvend:managed-by"), Value: aws.String("keyvend")}}}); err != nil {
		return fmt.Errorf("sequential CreateUser: %w", err)
	}
	if _, err := st.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{UserName: &user, GroupName: &group}); err != nil {
		return fmt.Errorf("sequential AddUserToGroup: %w", err)
	}
	key, err := st.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &user})
	if err != nil {
		return fmt.Errorf("sequential CreateAccessKey: %w", err)
	}
	value, _ := json.Marshal(map[string]any{"Version": 1, "AccessKeyId": aws.ToString(key.AccessKey.AccessKeyId), "SecretAccessKey": aws.ToString(key.AccessKey.SecretAccessKey)})
	if _, err := st.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("keyvend/users/" + user), SecretString: aws.String(string(value))}); err != nil {
		return fmt.Errorf("sequential CreateSecret: %w", err)
	}
	return nil
}
