package main

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// callCount is the AWS calls one operation made, next to the calls it
// needs.
type callCount struct {
	Op     string
	Calls  []string // operation names, sorted
	Needed []string // what the operation cannot do without, sorted
}

// Extra returns the calls made beyond Needed (a multiset difference).
func (c callCount) Extra() []string { return minus(c.Calls, c.Needed) }

// Missing returns needed calls that were not made (the list is stale).
func (c callCount) Missing() []string { return minus(c.Needed, c.Calls) }

func minus(a, b []string) []string {
	left := map[string]int{}
	for _, x := range b {
		left[x]++
	}
	var out []string
	for _, x := range a {
		if left[x] > 0 {
			left[x]--
			continue
		}
		out = append(out, x)
	}
	return out
}

func sortedOps(calls []awstest.Call) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.Operation
	}
	sort.Strings(out)
	return out
}

func sorted(ops string) []string {
	out := strings.Fields(ops)
	sort.Strings(out)
	return out
}

// countCalls runs each operation once through the handler (no added
// delay) and records the AWS calls it makes.
func countCalls(ctx context.Context, st *stack) ([]callCount, error) {
	if err := st.moto.Reset(ctx); err != nil {
		return nil, err
	}
	st.proxy.SetDelay(0)
	user, other := "calls-new", "calls-existing"
	ops := []struct {
		name, method, path, body string
		want                     int
		needed                   string
	}{
		{"provision (new group)", http.MethodPost, "/v1/users", createBody(user, "calls.example.com"), http.StatusCreated,
			"GetGroup CreateGroup PutGroupPolicy CreateUser CreateAccessKey AddUserToGroup CreateSecret"},
		{"provision (existing group)", http.MethodPost, "/v1/users", createBody(other, "calls.example.com"), http.StatusCreated,
			"GetGroup PutGroupPolicy CreateUser CreateAccessKey AddUserToGroup CreateSecret"},
		{"rotate", http.MethodPost, "/v1/users/" + user + "/rotate", "", http.StatusOK,
			// read the user and its grants (authorization), take the
			// cross-process lock, read keys and secret under it, make and
			// store the new key, delete the old one, release the lock
			"GetUser ListGroupsForUser CreateGroup ListAccessKeys GetSecretValue CreateAccessKey PutSecretValue DeleteAccessKey DeleteGroup"},
		{"update grants (keep one, add one)", http.MethodPut, "/v1/users/" + user + "/grants",
			`{"grants":[{"bucket":"calls.example.com","access":"read-write","prefix":""},{"bucket":"calls2.example.com","access":"read-only","prefix":""}]}`, http.StatusOK,
			// the answer describes the user (keys and secret included);
			// every wanted group's policy is put again (drift repair), a
			// group the user is not in yet is read first (path check)
			"GetUser ListGroupsForUser ListAccessKeys GetSecretValue PutGroupPolicy GetGroup CreateGroup PutGroupPolicy AddUserToGroup"},
		{"update grants (drop one)", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"calls2.example.com","access":"read-only","prefix":""}]}`, http.StatusOK,
			"GetUser ListGroupsForUser ListAccessKeys GetSecretValue PutGroupPolicy RemoveUserFromGroup"},
		{"deprovision", http.MethodDelete, "/v1/users/" + user, "", http.StatusNoContent,
			// DeleteUser fails in AWS while keys, groups or policies remain
			"GetUser ListAccessKeys ListGroupsForUser ListUserPolicies ListAttachedUserPolicies DescribeSecret DeleteAccessKey RemoveUserFromGroup DeleteSecret DeleteUser"},
	}
	var out []callCount
	for _, op := range ops {
		st.calls.Reset()
		code, body := st.do(ctx, op.method, op.path, op.body)
		if err := must(op.name, code, body, op.want); err != nil {
			return nil, err
		}
		out = append(out, callCount{Op: op.name, Calls: sortedOps(st.calls.Calls()), Needed: sorted(op.needed)})
	}
	return out, nil
}
