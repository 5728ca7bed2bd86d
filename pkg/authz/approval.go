package authz

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
)

// Approval makes a rule's grants wait for other people: a create (or a
// change of grants) that only such rules allow becomes a pending request
// until Min approvers matching Approvers agree. An approval rule allows
// the create action only (validation refuses other actions on it): what
// its requester may then do to the user it owns is as for any user.
type Approval struct {
	// Approvers are principal globs, matched as rules match principals
	// (IDs, and aliases such as jwt-group:NAME).
	Approvers []string `json:"approvers"`
	// Min is how many distinct approvers must approve (default 1).
	Min int `json:"min,omitempty"`
	// ExpiresIn is how long the request waits: a Go duration from
	// MinApprovalWait to MaxApprovalWait (default DefaultApprovalWait).
	ExpiresIn string `json:"expires_in,omitempty"`
	// Distinct says who counts as someone else than the requester:
	// DistinctPrincipal (default) refuses the requester as recorded (its
	// exact identity, an assumed-role session included); DistinctPerson
	// also refuses every other session of the requester's role.
	Distinct Distinct `json:"distinct,omitempty"`
}

// Distinct is how an approver must differ from the requester.
type Distinct string

// The separations of duty.
const (
	DistinctPrincipal Distinct = "principal"
	DistinctPerson    Distinct = "person"
)

// Bounds of an approval's expires_in.
const (
	MinApprovalWait     = 5 * time.Minute
	MaxApprovalWait     = 30 * 24 * time.Hour
	DefaultApprovalWait = 24 * time.Hour
)

// Wait is how long a request under a waits.
func (a *Approval) Wait() time.Duration {
	d, err := time.ParseDuration(a.ExpiresIn)
	if a.ExpiresIn == "" || err != nil {
		return DefaultApprovalWait
	}
	return d
}

func (a *Approval) min() int {
	if a.Min == 0 {
		return 1
	}
	return a.Min
}

func (a *Approval) distinct() Distinct {
	if a.Distinct == "" {
		return DistinctPrincipal
	}
	return a.Distinct
}

func isLiteral(p string) bool { return !strings.ContainsAny(p, "*?") }

// onePerson reports whether the approver pattern p can only ever be one
// approver: no glob, not a group (jwt-group:NAME), not a role (whose
// sessions are distinct approvers as recorded).
func onePerson(p string) bool {
	return isLiteral(p) && !strings.HasPrefix(p, "jwt-group:") && !strings.Contains(p, ":role/")
}

// approvalProblems says what is wrong with a rule's approval: none that
// can ever be given is refused.
func (r Rule) approvalProblems(at string) []string {
	a := r.Approval
	if a == nil {
		return nil
	}
	at += ".approval"
	var out []string
	if len(a.Approvers) == 0 {
		out = append(out, at+".approvers: at least one approver pattern is required")
	}
	literal := map[string]bool{}
	wild := false
	for j, p := range a.Approvers {
		switch {
		case strings.TrimSpace(p) == "" || p != strings.TrimSpace(p):
			out = append(out, fmt.Sprintf("%s.approvers[%d] %q: want a principal or a glob, without blanks", at, j, p))
		case onePerson(p):
			literal[p] = true
		default:
			wild = true
		}
	}
	if a.Min < 0 {
		out = append(out, fmt.Sprintf("%s.min %d: must be at least 1", at, a.Min))
	}
	if !wild && len(a.Approvers) > 0 && a.min() > len(literal) {
		out = append(out, fmt.Sprintf("%s.min %d: only %d distinct approvers are named, so the approval could never be given", at, a.min(), len(literal)))
	}
	// A single requester that is its own only approver(s): never approvable.
	if !wild && len(r.Principals) == 1 && isLiteral(r.Principals[0]) && literal[r.Principals[0]] && a.min() > len(literal)-1 {
		out = append(out, fmt.Sprintf("%s.approvers: the rule's only principal %s may not approve its own requests, and fewer than min other approvers are named", at, r.Principals[0]))
	}
	if a.ExpiresIn != "" {
		d, err := time.ParseDuration(a.ExpiresIn)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s.expires_in %q: want a Go duration such as \"24h\"", at, a.ExpiresIn))
		case d < MinApprovalWait || d > MaxApprovalWait:
			out = append(out, fmt.Sprintf("%s.expires_in %q: must be from 5m to 720h (30 days)", at, a.ExpiresIn))
		}
	}
	if a.Distinct != "" && a.Distinct != DistinctPrincipal && a.Distinct != DistinctPerson {
		out = append(out, fmt.Sprintf("%s.distinct %q: want \"principal\" (the default) or \"person\"", at, a.Distinct))
	}
	for j, x := range r.Actions {
		if x != Create {
			out = append(out, fmt.Sprintf("%s: a rule that requires approval allows only the create action (actions[%d] is %q): give other actions in a rule of their own", at, j, x))
		}
	}
	return out
}

// Need is the approval a request needs: one entry per grant that only
// rules requiring approval allow. Nil: none.
type Need struct {
	Grants []GrantNeed `json:"grants"`
	// Wait is how long the request waits: the shortest expires_in of the
	// rules involved.
	Wait time.Duration `json:"-"`
}

// GrantNeed is the approval one grant needs: Min distinct approvers
// matching Approvers (the union of its approving rules'; Min and Distinct
// the strictest of theirs).
type GrantNeed struct {
	Grant     policy.Grant `json:"grant"`
	Approvers []string     `json:"approvers"`
	Min       int          `json:"min"`
	Distinct  Distinct     `json:"distinct"`
	// Rules are the indexes of the approving rules in the rules file.
	Rules []int `json:"rules"`
}

// ApprovedBy reports whether a caller with names may approve this grant.
func (g GrantNeed) ApprovedBy(names []string) bool { return matchesAny(g.Approvers, names) }

// ApprovalIn returns the approval creating grants needs for a caller with
// names in channel ("" for none), nil when a rule without approval allows
// each of them. Call it after DecideIn allowed the creation.
func (rs *Rules) ApprovalIn(names []string, channel string, grants []policy.Grant) *Need {
	var need Need
	for _, g := range grants {
		var gn *GrantNeed
		free := false
		for i, r := range rs.Rules {
			if !r.covers(names, channel, Create, g) {
				continue
			}
			if r.Approval == nil {
				free = true
				break
			}
			a := r.Approval
			if gn == nil {
				gn = &GrantNeed{Grant: g, Distinct: DistinctPrincipal}
			}
			gn.Rules = append(gn.Rules, i)
			gn.Approvers = append(gn.Approvers, a.Approvers...)
			gn.Min = max(gn.Min, a.min())
			if a.distinct() == DistinctPerson {
				gn.Distinct = DistinctPerson
			}
			if w := a.Wait(); need.Wait == 0 || w < need.Wait {
				need.Wait = w
			}
		}
		if free || gn == nil {
			continue
		}
		sort.Strings(gn.Approvers)
		gn.Approvers = compact(gn.Approvers)
		need.Grants = append(need.Grants, *gn)
	}
	if len(need.Grants) == 0 {
		return nil
	}
	return &need
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// RequiresApproval reports whether any rule requires approval.
func (rs *Rules) RequiresApproval() bool {
	for _, r := range rs.Rules {
		if r.Approval != nil {
			return true
		}
	}
	return false
}
