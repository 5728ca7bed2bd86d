package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/grants"
)

// callCount is the AWS calls one operation made in one grant mode, next to
// the calls it needs.
type callCount struct {
	Mode   grants.Mode
	Op     string
	Calls  []string // operation names, sorted
	Needed []string // what the operation cannot do without, sorted
	// Cleanup is what the operation does beyond its own need, on purpose:
	// deleting grant groups left empty (grant mode group), so they do not
	// pile up against IAM's quota of groups. Shown apart from Needed, and
	// not counted as beyond it.
	Cleanup []string
	// Provision marks the provision of a new user, whose calls the report
	// compares between the grant modes.
	Provision bool
	// Note says why the code makes a call beyond Needed, when that is
	// known; the report shows it only when there is such a call.
	Note string
	// PerService is how many of Calls went to each service (IAM, Secrets
	// Manager, DynamoDB: the state table).
	PerService map[string]int
}

// Extra returns the calls made beyond Needed and Cleanup (a multiset
// difference).
func (c callCount) Extra() []string {
	return minus(c.Calls, append(append([]string{}, c.Needed...), c.Cleanup...))
}

// Missing returns needed (or cleanup) calls that were not made: the list
// is stale.
func (c callCount) Missing() []string {
	return minus(append(append([]string{}, c.Needed...), c.Cleanup...), c.Calls)
}

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
	sort.Strings(out)
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

// callOp is one request of the calls benchmark and what it needs.
type callOp struct {
	name, method, path, body string
	want                     int
	needed, cleanup          string
	provision                bool
	note                     string // why a call beyond needed is made (callCount.Note)
}

// What every operation on an existing user reads first, in one round trip
// (provision.load): GetUser — the user, keyvend's (path, tag, the exact
// spelling) or not found — ‖ GetUserPolicy ‖ ListGroupsForUser — its
// grants in either mode (a user vended before the deployment changed mode
// keeps working, and a user whose grants cannot be read is its
// requester's alone: fail closed) — for the authorization and the audit
// record.
const loadReads = "GetUser GetUserPolicy ListGroupsForUser"

// keyReads: the user's keys ‖ its secret (the key it holds), for an answer
// that says which key is in the secret and whether the user is complete.
const keyReads = "ListAccessKeys GetSecretValue"

// The state table's calls (pkg/state), beside or after the IAM and
// Secrets Manager calls:
//
//   - claim: a create writes the user's record (phase creating, leased to
//     the request) beside CreateUser, PutItem with a condition: the claim
//     on the name across processes;
//   - lease: every change of an existing user takes the user's lease first,
//     UpdateItem with a condition (a delete: beside its inventory);
//   - commit: the change is committed last — record, per-bucket summaries,
//     history entry, lease released — in one TransactWriteItems (a delete:
//     the record removed, the same way);
//   - release: an operation that changes nothing gives the lease back
//     (UpdateItem);
//   - record: describe reads the record (GetItem) for the user's version
//     (its ETag) and phase.
const (
	claimCall   = "PutItem"
	leaseCall   = "UpdateItem"
	commitCall  = "TransactWriteItems"
	releaseCall = "UpdateItem"
	recordRead  = "GetItem"
)

// rotateCalls: the lease (UpdateItem, in phase ready: the cross-process
// lock), then under it the user and its grants (authorization), its keys
// and secret (a rotation another process finished meanwhile is seen) ‖
// DescribeSecret ‖ GetResourcePolicy (keyvend writes no secret it did not
// make for this user: its tags, KMS key, no resource policy); make the
// new key, store it as the secret's new version, commit the record (the
// new key id; the lease released), then delete the old key.
const rotateCalls = leaseCall + " " + loadReads + " " + keyReads + " DescribeSecret GetResourcePolicy CreateAccessKey PutSecretValue " + commitCall + " DeleteAccessKey"

// deleteReads is round 1 of a deprovision: the user ‖ everything that
// blocks DeleteUser in AWS (keys, groups, inline and attached policies) ‖
// its grants (GetUserPolicy; groups come with ListGroupsForUser), for the
// authorization and the audit record ‖ DescribeSecret (is the secret
// keyvend's for this user? a foreign one is left alone).
const deleteReads = "GetUser ListAccessKeys ListGroupsForUser ListUserPolicies ListAttachedUserPolicies GetUserPolicy DescribeSecret"

// dropEmpty is the cleanup of a grant group the operation left: is it
// empty now (GetGroup)? Then its policy, then the group (IAM deletes no
// group that still has a policy).
const (
	checkEmpty = "GetGroup"
	dropEmpty  = "GetGroup DeleteGroupPolicy DeleteGroup"
)

// groupPolicies, in grant mode group, follow ListGroupsForUser: the
// policy of each grant group the user is in (GetGroupPolicy), because a
// group grants what its policy says whatever its name, and a user whose
// group was changed outside keyvend is its requester's alone (fail
// closed). One per group.
const groupPolicy = "GetGroupPolicy"

// callOps are the requests of the calls benchmark in grant mode mode, in
// order, each with the calls it needs. Every user and bucket is the mode's
// own.
func callOps(mode grants.Mode) []callOp {
	p := string(mode)
	a, b := "calls-"+p+"-a", "calls-"+p+"-b"
	x, y := "calls-"+p+".example.com", "calls2-"+p+".example.com"
	bothGrants := fmt.Sprintf(`{"grants":[{"bucket":%q,"access":"read-write","prefix":""},{"bucket":%q,"access":"read-only","prefix":""}]}`, x, y)
	firstGrant := fmt.Sprintf(`{"grants":[{"bucket":%q,"access":"read-write","prefix":""}]}`, x)
	replay := callOp{name: "provision (replay: the same request again)", method: http.MethodPost, path: "/v1/users", body: createBody(a, x), want: http.StatusOK,
		// CreateUser and the table's claim fail (the user and its record
		// exist); the record is leased, and the same round trip as every
		// operation on an existing user tells a replay (the same user,
		// complete, exactly these grants) from a conflict or a half-made
		// user and answers its key and secret; the record says so already,
		// so the lease is only released.
		needed: "CreateUser " + claimCall + " " + leaseCall + " " + loadReads + " " + keyReads + " " + releaseCall}
	describe := callOp{name: "describe", method: http.MethodGet, path: "/v1/users/" + a, want: http.StatusOK,
		needed: loadReads + " " + keyReads + " " + recordRead}
	rotate := callOp{name: "rotate", method: http.MethodPost, path: "/v1/users/" + a + "/rotate", want: http.StatusOK, needed: rotateCalls}
	// Updating grants takes the lease first, reads as describe does (the
	// answer describes the user, keys and secret included), changes the
	// grants, tags the user (TagUser): the fingerprint of the grants it now
	// holds, which a later create request's verdict reads, and a new expiry
	// when one is given; and commits the record last.
	updateReads := leaseCall + " " + loadReads + " " + keyReads + " TagUser " + commitCall
	if mode == grants.Policy {
		return []callOp{
			{name: "provision (new user)", method: http.MethodPost, path: "/v1/users", body: createBody(a, x), want: http.StatusCreated, provision: true,
				// the user (with its boundary and tags) ‖ the claim on the
				// name in the table, its key, its grants as one user policy,
				// the key stored, the record committed; PutUserPolicy runs
				// beside CreateAccessKey
				needed: "CreateUser " + claimCall + " CreateAccessKey PutUserPolicy CreateSecret " + commitCall},
			replay, describe, rotate,
			{name: "update grants (add one)", method: http.MethodPut, path: "/v1/users/" + a + "/grants", body: bothGrants, want: http.StatusOK,
				// the new user policy replaces the old one at once
				needed: updateReads + " PutUserPolicy"},
			{name: "update grants (drop one)", method: http.MethodPut, path: "/v1/users/" + a + "/grants", body: firstGrant, want: http.StatusOK,
				needed: updateReads + " PutUserPolicy"},
			{name: "deprovision", method: http.MethodDelete, path: "/v1/users/" + a, want: http.StatusNoContent,
				// round 1 with the lease (marking the user deleting); round
				// 2: delete its key and its inline policies (the user policy
				// keyvend-grants among them), schedule the secret's deletion;
				// round 3: DeleteUser, which fails in AWS while a key, group
				// or policy remains; then the record removed
				needed: deleteReads + " " + leaseCall + " DeleteAccessKey DeleteUserPolicy DeleteSecret DeleteUser " + commitCall},
		}
	}
	// Grant mode group: a, then b, with grant x; a adds y (a new group),
	// then drops it (y is left empty and deleted); a is deprovisioned
	// (x keeps b), then b (x is left empty and deleted).
	replay.needed = "GetGroup PutGroupPolicy " + groupPolicy + " " + replay.needed
	describe.needed += " " + groupPolicy
	rotate.needed += " " + groupPolicy
	return []callOp{
		{name: "provision (new user, new group)", method: http.MethodPost, path: "/v1/users", body: createBody(a, x), want: http.StatusCreated, provision: true,
			// alongside CreateUser: read the grant's group (missing), create
			// it, put its policy; the key, the membership, the key stored
			needed: "GetGroup CreateGroup PutGroupPolicy CreateUser " + claimCall + " CreateAccessKey AddUserToGroup CreateSecret " + commitCall},
		{name: "provision (new user, existing group)", method: http.MethodPost, path: "/v1/users", body: createBody(b, x), want: http.StatusCreated, provision: true,
			// the group is read (it exists: its path is checked, a group
			// of keyvend's name outside the path is never used) and its
			// policy put again (drift repair) before the key is stored
			needed: "GetGroup PutGroupPolicy CreateUser " + claimCall + " CreateAccessKey AddUserToGroup CreateSecret " + commitCall},
		// The replay starts the group setup alongside CreateUser, before it
		// is known that the user exists: GetGroup, PutGroupPolicy. Waiting
		// for CreateUser first would cost every provision a round trip.
		replay, describe, rotate,
		{name: "update grants (keep one, add one)", method: http.MethodPut, path: "/v1/users/" + a + "/grants", body: bothGrants, want: http.StatusOK,
			// the policy of the group the user is in is read (fail closed)
			// and put again (drift repair); the group the user is not in
			// yet is read first (missing here: created; an existing one's
			// path is checked), then joined. The group the user is in
			// already came with ListGroupsForUser (name, path, ARN) and is
			// not read again.
			needed: updateReads + " " + groupPolicy + " PutGroupPolicy GetGroup CreateGroup PutGroupPolicy AddUserToGroup"},
		{name: "update grants (drop one)", method: http.MethodPut, path: "/v1/users/" + a + "/grants", body: firstGrant, want: http.StatusOK,
			// both groups' policies read, the kept group's put again, the
			// user leaves the other
			needed:  updateReads + " " + groupPolicy + " " + groupPolicy + " PutGroupPolicy RemoveUserFromGroup",
			cleanup: dropEmpty},
		{name: "deprovision (its group keeps a member)", method: http.MethodDelete, path: "/v1/users/" + a, want: http.StatusNoContent,
			// round 2: delete its key, leave its groups, schedule the
			// secret's deletion; round 3: DeleteUser, which fails in AWS
			// while a key, group or policy remains
			needed:  deleteReads + " " + groupPolicy + " " + leaseCall + " DeleteAccessKey RemoveUserFromGroup DeleteSecret DeleteUser " + commitCall,
			cleanup: checkEmpty},
		{name: "deprovision (its group's last member)", method: http.MethodDelete, path: "/v1/users/" + b, want: http.StatusNoContent,
			needed:  deleteReads + " " + groupPolicy + " " + leaseCall + " DeleteAccessKey RemoveUserFromGroup DeleteSecret DeleteUser " + commitCall,
			cleanup: dropEmpty},
	}
}

// countCalls runs each operation once through the handler of each grant
// mode (no added delay) and records the AWS calls it makes.
func countCalls(ctx context.Context, st *stack) ([]callCount, error) {
	if err := st.reset(ctx); err != nil {
		return nil, err
	}
	st.proxy.SetDelay(0)
	var out []callCount
	for _, mode := range grantModes {
		for _, op := range callOps(mode) {
			st.calls.Reset()
			code, body := st.do(ctx, mode, op.method, op.path, op.body)
			if err := must(fmt.Sprintf("%s (grant mode %s)", op.name, mode), code, body, op.want); err != nil {
				return nil, err
			}
			calls := st.calls.Calls()
			per := map[string]int{}
			for _, c := range calls {
				per[c.Service]++
			}
			out = append(out, callCount{Mode: mode, Op: op.name, Calls: sortedOps(calls),
				Needed: sorted(op.needed), Cleanup: sorted(op.cleanup), Provision: op.provision, Note: op.note, PerService: per})
		}
	}
	return out, nil
}

// serviceOrder is the order services are shown in.
var serviceOrder = []string{svcIAM, svcSecrets, svcDynamo}

// servicesLine renders calls per service as "IAM 4, Secrets Manager 1,
// DynamoDB 2" (services with no call left out; any other service last).
func servicesLine(per map[string]int) string {
	var parts []string
	seen := map[string]bool{}
	for _, s := range serviceOrder {
		seen[s] = true
		if per[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, per[s]))
		}
	}
	var rest []string
	for s := range per {
		if !seen[s] && per[s] > 0 {
			rest = append(rest, s)
		}
	}
	sort.Strings(rest)
	for _, s := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", s, per[s]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
