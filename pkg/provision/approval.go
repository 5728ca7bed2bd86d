package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// Approvals: a create, or a change of grants, that only rules requiring
// approval allow (authz.Approval) is not provisioned but stored as a
// pending request (pkg/approval) and answered with *Pending. Approvers
// decide it with Decide — the one entry point of every front end (the
// HTTP API, the CLI through it, Slack) — and the last approval needed
// provisions exactly what was asked, as the requester. A pending request
// past its expiry is expired when next read (GetRequest, ListRequests,
// Decide, a twin request) or by the reaper (ExpireRequests), whichever
// comes first: a late decision is KindGone.

// Pending is what Create and UpdateGrants return when what they ask needs
// approval: the request waiting (a new one, or the identical one the
// requester already had pending). It is an error so that a front end that
// does not know approvals never mistakes it for a success.
type Pending struct {
	Request *approval.Request
	// Existing is true when the request was already pending (an identical
	// request is not made twice).
	Existing bool
}

func (p *Pending) Error() string {
	return fmt.Sprintf("approval required: request %s is pending until %s", p.Request.ID, p.Request.ExpiresAt.UTC().Format(time.RFC3339))
}

// requestNotFound answers for a request that does not exist or that the
// caller may not see: the same answer.
func requestNotFound(id string) error {
	return &Error{Kind: KindNotFound, Detail: fmt.Sprintf("no approval request %s", id)}
}

// updateBody is what a change of grants waiting for approval records of
// its request.
type updateBody struct {
	Grants    []policy.Grant `json:"grants"`
	ExpiresIn string         `json:"expires_in,omitempty"`
	ExpiresAt string         `json:"expires_at,omitempty"`
	IfMatch   int64          `json:"if_match,omitempty"`
}

// submit stores a pending request for what p asks and answers *Pending;
// an identical pending request of the same requester is answered instead.
func (s *Service) submit(ctx context.Context, p caller.Principal, requestID string, kind approval.Kind, user string, grants []policy.Grant, body any, reason string, need *authz.Need) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	r := &approval.Request{
		ID: approval.NewID(), Kind: kind, User: user,
		Principal: p.ID, Requester: p.Requester(), Groups: p.Groups, Channel: p.Channel,
		Grants: grants, Body: raw, Reason: reason, Needs: need.Grants, RequestID: requestID,
		CreatedAt: now, ExpiresAt: now.Add(need.Wait), Decisions: []approval.Decision{},
		Fingerprint: approval.Fingerprint(kind, user, body),
	}
	for try := 0; try < 3; try++ {
		err := s.approvals.Submit(ctx, r)
		var dup *approval.DuplicateError
		switch {
		case err == nil:
			s.appendEntry(ctx, s.entry("approval-request", p, requestID, user, nil, grants, "", map[string]any{
				"approval_request": r.ID, "reason": reason, "approval_expires_at": r.ExpiresAt.Format(time.RFC3339),
			}))
			return &Pending{Request: r}
		case errors.As(err, &dup):
			old, gerr := s.approvals.Get(ctx, dup.ID)
			if gerr != nil && !errors.Is(gerr, approval.ErrNotFound) {
				return wrapf(gerr, "read approval request %s", dup.ID)
			}
			if gerr == nil {
				if expired, eerr := s.expireIfDue(ctx, old); eerr != nil {
					return eerr
				} else if !expired && old.Status == approval.Pending {
					return &Pending{Request: old, Existing: true}
				}
			}
		case errors.Is(err, approval.ErrChanged):
		default:
			return wrapf(err, "store approval request for user %s", user)
		}
	}
	return busy(user, "being requested by an identical request")
}

// appendEntry adds an entry to a user's history; a failure is logged (the
// request itself keeps what happened).
func (s *Service) appendEntry(ctx context.Context, h *state.History) {
	if err := s.store.Append(ctx, *h); err != nil {
		s.log.ErrorContext(ctx, "approval: history entry not written", "user", h.User, "action", h.Action, "error", err)
	}
}

// expireIfDue expires r if it is pending past its expiry (r is updated);
// it reports whether r is expired now.
func (s *Service) expireIfDue(ctx context.Context, r *approval.Request) (bool, error) {
	for try := 0; r.Status == approval.Pending && !s.cfg.Now().Before(r.ExpiresAt); try++ {
		if try == 3 {
			return false, busy(r.User, "being decided by another request")
		}
		r.Status = approval.Expired
		err := s.approvals.Update(ctx, r)
		if errors.Is(err, approval.ErrChanged) {
			fresh, gerr := s.approvals.Get(ctx, r.ID)
			if gerr != nil {
				return false, wrapf(gerr, "read approval request %s", r.ID)
			}
			*r = *fresh
			continue
		}
		if err != nil {
			r.Status = approval.Pending
			return false, wrapf(err, "expire approval request %s", r.ID)
		}
		start := time.Now()
		keyvend := caller.Principal{ID: "keyvend"}
		s.appendEntry(ctx, s.entry("approval-expire", keyvend, r.RequestID, r.User, nil, r.Grants, "", map[string]any{
			"approval_request": r.ID, "requested_by": r.Requester, "approval_expires_at": r.ExpiresAt.UTC().Format(time.RFC3339),
		}))
		s.audit(ctx, start, "approval-expire", keyvend, r.ID, r.User, r.Grants, nil)
	}
	return r.Status == approval.Expired, nil
}

// self reports whether p is r's requester.
func self(p caller.Principal, r *approval.Request) bool {
	return ownsRequester(p, r.Requester) || p.Requester() == r.Requester
}

// approverOf reports whether p is named as an approver of one of r's grants.
func approverOf(p caller.Principal, r *approval.Request) bool {
	for _, g := range r.Needs {
		if g.ApprovedBy(p.Names()) {
			return true
		}
	}
	return false
}

// counts reports whether decision d counts towards need g of r: by an
// approver g names, someone else than the requester (under distinct
// person, not even another session of its role).
func counts(g authz.GrantNeed, r *approval.Request, d approval.Decision) bool {
	if !g.ApprovedBy(d.Names) || d.Requester == r.Requester || ownsRequester(caller.Principal{ID: d.Principal, Session: sessionOf(d)}, r.Requester) {
		return false
	}
	return g.Distinct != authz.DistinctPerson || d.Principal != r.Principal
}

func sessionOf(d approval.Decision) string {
	if d.Requester != d.Principal {
		return d.Requester
	}
	return ""
}

// satisfied reports whether r's approvals meet every need: Min distinct
// approvers each (by their exact identity; by principal under distinct
// person).
func satisfied(needs []authz.GrantNeed, r *approval.Request) bool {
	for _, g := range needs {
		who := map[string]bool{}
		for _, d := range r.Decisions {
			if d.Decision != "approve" || !counts(g, r, d) {
				continue
			}
			k := d.Requester
			if g.Distinct == authz.DistinctPerson {
				k = d.Principal
			}
			who[k] = true
		}
		if len(who) < g.Min {
			return false
		}
	}
	return true
}

// stillApproved checks, when an approved request is provisioned, that
// its approvals meet what the rules ask now (they may have changed).
func stillApproved(r *approval.Request, need *authz.Need) error {
	if need == nil || satisfied(need.Grants, r) {
		return nil
	}
	return forbidden("the rules changed since approval request %s was approved: its approvals no longer cover what it asks; ask again", r.ID)
}

// GetRequest returns request id if p is its requester or one of its
// approvers; anyone else is told it does not exist.
func (s *Service) GetRequest(ctx context.Context, p caller.Principal, id string) (*approval.Request, error) {
	r, err := s.approvals.Get(ctx, id)
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return nil, requestNotFound(id)
	case err != nil:
		return nil, wrapf(err, "read approval request %s", id)
	case !self(p, r) && !approverOf(p, r):
		return nil, requestNotFound(id)
	}
	if _, err := s.expireIfDue(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// ListRequestsInput asks for the caller's requests and its queue.
type ListRequestsInput struct {
	Principal caller.Principal
	// Status filters ("" for every status).
	Status approval.Status
}

// RequestList is a caller's requests and the pending requests it may
// decide, newest first.
type RequestList struct {
	Requests []*approval.Request `json:"requests"`
}

// ListRequests lists what p asked (up to approval.MaxList, newest first)
// and the pending requests p may decide (its queue).
func (s *Service) ListRequests(ctx context.Context, in ListRequestsInput) (*RequestList, error) {
	if in.Status != "" && !in.Status.Valid() {
		return nil, invalid("the query is not valid", policy.FieldError{Field: "status", Detail: fmt.Sprintf("must be one of %v", approval.Statuses)})
	}
	p := in.Principal
	own, err := s.approvals.ByRequester(ctx, p.Requester(), approval.MaxList)
	if err != nil {
		return nil, wrapf(err, "list approval requests")
	}
	all := own
	if in.Status == "" || in.Status == approval.Pending {
		queue, err := s.approvals.Pending(ctx, approval.MaxList)
		if err != nil {
			return nil, wrapf(err, "list pending approval requests")
		}
		for _, r := range queue {
			if !self(p, r) && approverOf(p, r) {
				all = append(all, r)
			}
		}
	}
	seen := map[string]bool{}
	out := []*approval.Request{}
	for _, r := range all {
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		if _, err := s.expireIfDue(ctx, r); err != nil {
			return nil, err
		}
		if in.Status == "" || r.Status == in.Status {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return &RequestList{Requests: out}, nil
}

// DecideInput is one approver's decision on a request.
type DecideInput struct {
	Principal caller.Principal
	RequestID string
	ID        string // the approval request's
	Approve   bool   // false: deny
	Reason    string // required to deny
}

// Decide records p's decision on request in.ID. The requester may never
// decide its own request (KindForbidden), nor may anyone its rules do not
// name as an approver (who cannot see the request: KindNotFound). A
// denial closes the request. The approval that completes what the request
// needs provisions it, as the requester, and the request's answer is what
// that answered (status provisioned or failed). A request no longer
// pending is KindGone when it expired, KindConflict otherwise.
func (s *Service) Decide(ctx context.Context, in DecideInput) (r *approval.Request, err error) {
	start := time.Now()
	action := "approval-approve"
	if !in.Approve {
		action = "approval-deny"
	}
	var user string
	var grants []policy.Grant
	defer func() { s.audit(ctx, start, action, in.Principal, in.RequestID, user, grants, &err) }()
	if in.Reason != "" || !in.Approve {
		if msg := checkReason(in.Reason); msg != "" {
			return nil, invalid("the decision is not valid", policy.FieldError{Field: "reason", Detail: msg})
		}
	}
	p := in.Principal
	for try := 0; ; try++ {
		if try == 5 {
			return nil, busy(in.ID, "being decided by another request")
		}
		r, err = s.GetRequest(ctx, p, in.ID) // expires it if due
		if err != nil {
			return nil, err
		}
		user, grants = r.User, r.Grants
		switch r.Status {
		case approval.Pending:
		case approval.Expired:
			return nil, &Error{Kind: KindGone, Detail: fmt.Sprintf("approval request %s expired at %s", r.ID, r.ExpiresAt.UTC().Format(time.RFC3339))}
		default:
			return nil, conflict("approval request %s is already %s", r.ID, r.Status)
		}
		if self(p, r) {
			return nil, forbidden("%s asked for approval request %s and may not decide it", orAnonymous(p.Requester()), r.ID)
		}
		d := approval.Decision{Decision: "approve", Principal: p.ID, Requester: p.Requester(), Names: p.Names(), Reason: in.Reason, RequestID: in.RequestID, At: s.cfg.Now().UTC()}
		if !in.Approve {
			d.Decision = "deny"
		}
		for _, old := range r.Decisions {
			if old.Requester == d.Requester {
				return nil, conflict("%s already decided approval request %s", d.Requester, r.ID)
			}
		}
		counted := false
		for _, g := range r.Needs {
			counted = counted || counts(g, r, d)
		}
		if !counted {
			return nil, forbidden("%s may not decide approval request %s: the rules require a different person than the requester (another session of the role %s does not count)", orAnonymous(p.Requester()), r.ID, r.Principal)
		}
		r.Decisions = append(r.Decisions, d)
		switch {
		case !in.Approve:
			r.Status = approval.Denied
		case satisfied(r.Needs, r):
			r.Status = approval.Approved
		}
		err = s.approvals.Update(ctx, r)
		if errors.Is(err, approval.ErrChanged) {
			continue // another decision or the expiry came first: read again
		}
		if err != nil {
			return nil, wrapf(err, "record the decision on approval request %s", r.ID)
		}
		break
	}
	inputs := map[string]any{"approval_request": r.ID, "requested_by": r.Requester, "status": string(r.Status)}
	if in.Reason != "" {
		inputs["reason"] = in.Reason
	}
	s.appendEntry(ctx, s.entry(action, p, in.RequestID, r.User, nil, r.Grants, "", inputs))
	if r.Status == approval.Approved {
		s.execute(ctx, r, in.RequestID)
	}
	return r, nil
}

// execute provisions approved request r as its requester and records
// what that answered. Only the decision that moved r to approved runs it
// (a conditional write): two approvals racing provision once.
func (s *Service) execute(ctx context.Context, r *approval.Request, requestID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	p := caller.Principal{ID: r.Principal, Raw: r.Requester, Groups: r.Groups, Channel: r.Channel}
	if r.Requester != r.Principal {
		p.Session = r.Requester
	}
	var (
		res    any
		status int
		err    error
	)
	switch r.Kind {
	case approval.Create:
		var req CreateRequest
		if err = json.Unmarshal(r.Body, &req); err == nil {
			var cr *CreateResult
			cr, err = s.Create(ctx, CreateInput{Principal: p, RequestID: requestID, Request: req, approved: r})
			res, status = cr, http.StatusOK
			if cr != nil && cr.Created {
				status = http.StatusCreated
			}
		}
	case approval.UpdateGrants:
		var b updateBody
		if err = json.Unmarshal(r.Body, &b); err == nil {
			res, err = s.UpdateGrants(ctx, UpdateGrantsInput{Principal: p, RequestID: requestID, User: r.User, Grants: b.Grants,
				Lifetime: Lifetime{ExpiresIn: b.ExpiresIn, ExpiresAt: b.ExpiresAt}, IfMatch: b.IfMatch, approved: r})
			status = http.StatusOK
		}
	default:
		err = fmt.Errorf("approval request %s: unknown kind %q", r.ID, r.Kind)
	}
	r.Status = approval.Provisioned
	if err != nil {
		r.Status = approval.Failed
		status, res = answerOf(err)
		s.log.ErrorContext(ctx, "approval: the approved request failed to provision", "approval_request", r.ID, "user", r.User, "error", err)
	}
	body, _ := json.Marshal(res)
	r.Answer = &approval.Answer{Status: status, Body: body}
	if uerr := s.approvals.Update(ctx, r); uerr != nil {
		s.log.ErrorContext(ctx, "approval: the outcome of an approved request was not recorded", "approval_request", r.ID, "status", r.Status, "error", uerr)
	}
}

// answerOf is what a failed provision answered, as the API would: the
// status of its kind and a problem body; keyvend's and AWS's own errors
// keep their details in the log.
func answerOf(err error) (int, map[string]any) {
	var e *Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError, map[string]any{"title": "Internal error", "detail": "provisioning failed; the operator has the details in the log"}
	}
	status := map[Kind]int{KindInvalid: 400, KindForbidden: 403, KindNotFound: 404, KindConflict: 409, KindInProgress: 409, KindPrecondition: 412, KindGone: 410}[e.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body := map[string]any{"title": e.Kind.String(), "detail": e.Detail}
	if len(e.Fields) > 0 {
		body["errors"] = e.Fields
	}
	return status, body
}

// ExpireRequests expires the pending requests past their expiry (the
// reaper's sweep; reads expire them too). It returns how many it expired.
func (s *Service) ExpireRequests(ctx context.Context) (int, error) {
	queue, err := s.approvals.Pending(ctx, approval.MaxList)
	if err != nil {
		return 0, wrapf(err, "list pending approval requests")
	}
	n := 0
	for _, r := range queue {
		if !s.cfg.Now().Before(r.ExpiresAt) {
			expired, err := s.expireIfDue(ctx, r)
			if err != nil {
				return n, err
			}
			if expired {
				n++
			}
		} else {
			break // the queue is sorted by expiry
		}
	}
	return n, nil
}

// approvalInputs adds to a history entry's inputs the approval request a
// change provisions and who approved it: both people are on record.
func approvalInputs(m map[string]any, r *approval.Request) {
	if r == nil {
		return
	}
	var by []string
	for _, d := range r.Decisions {
		if d.Decision == "approve" {
			by = append(by, d.Requester)
		}
	}
	m["approval_request"] = r.ID
	m["approved_by"] = by
}

// updateApproval decides whether a change of grants waits for approval:
// when the rules ask approval for a new grant (one the user does not hold
// already), and the caller may change the user, it is submitted and
// answered *Pending. For the approved change, the approvals must still
// cover what the rules ask now.
func (s *Service) updateApproval(ctx context.Context, in UpdateGrantsInput) error {
	need := s.rules.ApprovalIn(in.Principal.Names(), in.Principal.Channel, in.Grants)
	if need == nil {
		return nil
	}
	_, st, err := s.load(ctx, in.Principal, authz.Update, in.User, grantState)
	if err != nil {
		return err
	}
	if st.held != nil && st.held.Intact {
		kept := need.Grants[:0:0]
		for _, g := range need.Grants {
			if !slices.Contains(st.held.Grants, g.Grant) {
				kept = append(kept, g)
			}
		}
		if len(kept) == 0 {
			return nil
		}
		need = &authz.Need{Grants: kept, Wait: need.Wait}
	}
	if in.approved != nil {
		return stillApproved(in.approved, need)
	}
	body := updateBody{Grants: in.Grants, ExpiresIn: in.Lifetime.ExpiresIn, ExpiresAt: in.Lifetime.ExpiresAt, IfMatch: in.IfMatch}
	return s.submit(ctx, in.Principal, in.RequestID, approval.UpdateGrants, in.User, in.Grants, body, "", need)
}

// submitCreate makes a create that needs approval wait (*Pending). A name
// already taken is refused at once, as Create would after approval — a
// request never waits for a conflict, nor writes to another user's
// history; nil when the user exists exactly as asked (a replay, which
// Create answers as it is).
func (s *Service) submitCreate(ctx context.Context, in CreateInput) error {
	rec, err := s.store.Get(ctx, in.Request.User)
	switch {
	case err == nil && sameRequest(rec, in):
		return nil
	case err == nil:
		return conflict("user %s already exists with different grants or another requester", in.Request.User)
	case !errors.Is(err, state.ErrNotFound):
		return wrapf(err, "read the record of user %s", in.Request.User)
	}
	return s.submit(ctx, in.Principal, in.RequestID, approval.Create, in.Request.User, in.Request.Grants, in.Request, in.Request.Reason, in.need)
}
