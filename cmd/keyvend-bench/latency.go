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

// measureLatency provisions n users into one existing group, each followed
// by the same provision done by the sequential reference flow and by the
// user's deprovision (interleaved, so all three see the same noise), then
// newGroups users each with a new group: all through the handler and the
// proxy that adds delay to every AWS call.
func measureLatency(ctx context.Context, st *stack, delay time.Duration, n, newGroups int, progress func(string)) (*latencyRun, error) {
	if err := st.moto.Reset(ctx); err != nil {
		return nil, err
	}
	st.proxy.SetDelay(delay)
	run := &latencyRun{Delay: delay}
	tag := fmt.Sprintf("d%d", delay.Milliseconds())
	shared := "shared-" + tag + ".example.com"
	// Warm up: creates the shared group and the service's connections.
	for i := range 3 {
		code, body := st.do(ctx, http.MethodPost, "/v1/users", createBody(fmt.Sprintf("warm-%s-%d", tag, i), shared))
		if err := must("warm-up provision", code, body, http.StatusCreated); err != nil {
			return nil, err
		}
		if err := sequentialProvision(ctx, st, fmt.Sprintf("warmseq-%s-%d", tag, i), shared); err != nil {
			return nil, err
		}
	}
	// Each user is deprovisioned right after it was provisioned (and the
	// reference flow's user removed, without delay and unmeasured), so the
	// shared group keeps a handful of members: moto ignores GetGroup's
	// MaxItems and answers with every member (17 ms at 100 members, 37 ms
	// at 300, on moto's one thread), which real IAM does not.
	for i := range n {
		user := fmt.Sprintf("lat-%s-%03d", tag, i)
		start := time.Now()
		code, body := st.do(ctx, http.MethodPost, "/v1/users", createBody(user, shared))
		run.Existing = append(run.Existing, time.Since(start))
		if err := must("provision "+user, code, body, http.StatusCreated); err != nil {
			return nil, err
		}
		seqUser := fmt.Sprintf("seq-%s-%03d", tag, i)
		start = time.Now()
		if err := sequentialProvision(ctx, st, seqUser, shared); err != nil {
			return nil, err
		}
		run.Sequential = append(run.Sequential, time.Since(start))
		start = time.Now()
		code, body = st.do(ctx, http.MethodDelete, "/v1/users/"+user, "")
		run.Deprovision = append(run.Deprovision, time.Since(start))
		if err := must("deprovision "+user, code, body, http.StatusNoContent); err != nil {
			return nil, err
		}
		st.proxy.SetDelay(0)
		code, body = st.do(ctx, http.MethodDelete, "/v1/users/"+seqUser, "")
		st.proxy.SetDelay(delay)
		if err := must("remove "+seqUser, code, body, http.StatusNoContent); err != nil {
			return nil, err
		}
		if (i+1)%25 == 0 {
			progress(fmt.Sprintf("delay %s: %d/%d provisions and deprovisions (existing group)", delay, i+1, n))
		}
	}
	for i := range newGroups {
		user := fmt.Sprintf("ng-%s-%03d", tag, i)
		start := time.Now()
		code, body := st.do(ctx, http.MethodPost, "/v1/users", createBody(user, fmt.Sprintf("new-%s-%03d.example.com", tag, i)))
		run.NewGroups = append(run.NewGroups, time.Since(start))
		if err := must("provision "+user, code, body, http.StatusCreated); err != nil {
			return nil, err
		}
	}
	progress(fmt.Sprintf("delay %s: %d provisions (new groups)", delay, newGroups))
	return run, nil
}

// sequentialProvision is the reference: the calls of a provision into an
// existing group, each waiting for the one before (no concurrency).
func sequentialProvision(ctx context.Context, st *stack, user, bucket string) error {
	g := policy.Grant{Bucket: bucket, Access: policy.ReadWrite}
	group := policy.GroupName(g)
	doc, err := policy.Document(g)
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
