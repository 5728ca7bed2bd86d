// Package grants carries a user's grants to IAM, in one of two modes:
//
//   - Policy (the default): all of a user's grants are one inline policy on
//     the user (policy.UserPolicyName), which the runtime roles may put only
//     on users that carry the permissions boundary — IAM itself fences it,
//     not keyvend's code.
//   - Group (opt-in, the console-style model): one IAM group per grant
//     under the user path, with the grant's policy, and the user a member.
//     IAM has no condition on who joins a group, so a compromised function
//     could add any user of the account to a keyvend group: only an SCP
//     closes that (README, "Grant modes").
//
// Whatever the deployment's mode, Read understands both (users vended
// before a mode change keep working), and Apply moves a user to the
// deployment's mode.
package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/awserr"
	"github.com/keyvend/keyvend/pkg/policy"
)

// Mode is how a deployment's grants reach IAM.
type Mode string

// The grant modes.
const (
	Policy Mode = "policy"
	Group  Mode = "group"
)

// ParseMode reads a mode setting; "" is Policy.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Policy:
		return Policy, nil
	case Group:
		return Group, nil
	}
	return "", fmt.Errorf("grant mode %q: want %q or %q", s, Policy, Group)
}

// Limits of a user's grants.
const (
	// MaxGroupGrants is IAM's limit of groups per user (grant mode group).
	MaxGroupGrants = 10
)

// IAM is the part of the IAM API the carriers call.
type IAM interface {
	PutUserPolicy(context.Context, *iam.PutUserPolicyInput, ...func(*iam.Options)) (*iam.PutUserPolicyOutput, error)
	GetUserPolicy(context.Context, *iam.GetUserPolicyInput, ...func(*iam.Options)) (*iam.GetUserPolicyOutput, error)
	DeleteUserPolicy(context.Context, *iam.DeleteUserPolicyInput, ...func(*iam.Options)) (*iam.DeleteUserPolicyOutput, error)
	ListGroupsForUser(context.Context, *iam.ListGroupsForUserInput, ...func(*iam.Options)) (*iam.ListGroupsForUserOutput, error)
	GetGroup(context.Context, *iam.GetGroupInput, ...func(*iam.Options)) (*iam.GetGroupOutput, error)
	CreateGroup(context.Context, *iam.CreateGroupInput, ...func(*iam.Options)) (*iam.CreateGroupOutput, error)
	PutGroupPolicy(context.Context, *iam.PutGroupPolicyInput, ...func(*iam.Options)) (*iam.PutGroupPolicyOutput, error)
	GetGroupPolicy(context.Context, *iam.GetGroupPolicyInput, ...func(*iam.Options)) (*iam.GetGroupPolicyOutput, error)
	DeleteGroupPolicy(context.Context, *iam.DeleteGroupPolicyInput, ...func(*iam.Options)) (*iam.DeleteGroupPolicyOutput, error)
	DeleteGroup(context.Context, *iam.DeleteGroupInput, ...func(*iam.Options)) (*iam.DeleteGroupOutput, error)
	AddUserToGroup(context.Context, *iam.AddUserToGroupInput, ...func(*iam.Options)) (*iam.AddUserToGroupOutput, error)
	RemoveUserFromGroup(context.Context, *iam.RemoveUserFromGroupInput, ...func(*iam.Options)) (*iam.RemoveUserFromGroupOutput, error)
}

// Config configures a Carrier.
type Config struct {
	Mode Mode
	// Partition names every ARN in the documents ("aws", "aws-us-gov", …).
	Partition string
	// Path is the IAM path of vended users and of grant groups ("/keyvend/").
	Path string
}

// Carrier gives users their grants in the deployment's mode, and reads
// them back in either.
type Carrier struct {
	iam IAM
	cfg Config
	log *slog.Logger
}

// New returns a Carrier. log nil means slog.Default.
func New(c IAM, cfg Config, log *slog.Logger) *Carrier {
	if log == nil {
		log = slog.Default()
	}
	return &Carrier{iam: c, cfg: cfg, log: log}
}

// Mode is the deployment's grant mode.
func (c *Carrier) Mode() Mode { return c.cfg.Mode }

// ErrGroupQuota means IAM refused a new group: the account holds as many
// groups as its quota allows (300 by default). Retrying does not help;
// grant mode policy has no such limit.
var ErrGroupQuota = errors.New("IAM's quota of groups per account is reached")

// Check returns why gs cannot be carried in the deployment's mode, or
// nil: grant mode policy needs the merged user policy to fit IAM's 2,048
// characters of inline policy per user; grant mode group needs at most 10
// grants (IAM's groups per user). The grants themselves must be valid
// (policy.Grant.Validate) already.
func (c *Carrier) Check(gs []policy.Grant) []policy.FieldError {
	switch c.cfg.Mode {
	case Group:
		if len(gs) > MaxGroupGrants {
			return []policy.FieldError{{Field: "grants", Detail: fmt.Sprintf("at most %d grants in grant mode group (IAM allows %d groups per user), got %d", MaxGroupGrants, MaxGroupGrants, len(gs))}}
		}
	default:
		doc, err := policy.UserDocument(c.cfg.Partition, gs)
		if err != nil {
			return []policy.FieldError{{Field: "grants", Detail: err.Error()}}
		}
		if n := policy.Chars(doc); n > policy.MaxUserInlineChars {
			return []policy.FieldError{{Field: "grants", Detail: fmt.Sprintf("these grants need a user policy of %d characters; IAM allows %d characters of inline policy per user: ask for fewer grants or shorter prefixes, or split them across users", n, policy.MaxUserInlineChars)}}
		}
	}
	return nil
}

// GroupRef is a keyvend grant group and the grant it carries.
type GroupRef struct {
	Name  string       `json:"name"`
	ARN   string       `json:"arn"`
	Grant policy.Grant `json:"grant"`
}

// Held is what a user holds: the grants keyvend can read, and whether that
// is all of it.
type Held struct {
	// Grants are the grants read from the user's policy and groups, sorted.
	Grants []policy.Grant
	// Intact is false when something keyvend manages could not be read
	// exactly — a user policy or grant group changed outside keyvend, a
	// group without its policy, or no grant at all — so Grants may
	// understate what the user can do. Decisions about such a user must
	// not rest on Grants (fail closed).
	Intact bool
	// Policy reports that the user has keyvend's user policy; PolicyExact
	// that it is exactly the document of the grants it names.
	Policy, PolicyExact bool
	// GroupsIntact is false when a group under the path does not carry a
	// keyvend grant (not keyvend's, its policy missing or changed).
	GroupsIntact bool
	// Groups are the keyvend grant groups the user is in, by name.
	Groups []GroupRef
}

// Mode is the mode the user's grants are in: Policy, Group, or "" when it
// holds none (or both, in the middle of a move: "mixed").
func (h *Held) Mode() Mode {
	switch {
	case h.Policy && len(h.Groups) > 0:
		return "mixed"
	case h.Policy:
		return Policy
	case len(h.Groups) > 0:
		return Group
	}
	return ""
}

// Same reports whether the user holds exactly gs, intact.
func (h *Held) Same(gs []policy.Grant) bool {
	return h.Intact && sameGrants(h.Grants, gs)
}

// Within reports whether every grant the user holds is one of gs.
func (h *Held) Within(gs []policy.Grant) bool {
	want := map[policy.Grant]bool{}
	for _, g := range gs {
		want[g] = true
	}
	for _, g := range h.Grants {
		if !want[g] {
			return false
		}
	}
	return true
}

func sameGrants(a, b []policy.Grant) bool {
	as, bs := map[policy.Grant]bool{}, map[policy.Grant]bool{}
	for _, g := range a {
		as[g] = true
	}
	for _, g := range b {
		bs[g] = true
	}
	if len(as) != len(bs) {
		return false
	}
	for g := range as {
		if !bs[g] {
			return false
		}
	}
	return true
}

// Read reads what user holds, in either mode, in one round trip (two for a
// user in grant groups: each group's policy is read and checked). A user
// that does not exist is IAM's NoSuchEntity error.
func (c *Carrier) Read(ctx context.Context, user string) (*Held, error) {
	var (
		wg             sync.WaitGroup
		doc            *string
		groups         []iamtypes.Group
		pErr, gErr     error
		userPolicyName = policy.UserPolicyName
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		out, err := c.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: &user, PolicyName: &userPolicyName})
		switch {
		case awserr.Is(err, "NoSuchEntity"): // no policy (or no user: ListGroupsForUser says which)
		case err != nil:
			pErr = fmt.Errorf("read policy %s of user %s: %w", userPolicyName, user, err)
		default:
			doc = out.PolicyDocument
		}
	}()
	go func() {
		defer wg.Done()
		groups, gErr = c.keyvendGroups(ctx, user)
	}()
	wg.Wait()
	if gErr != nil {
		return nil, gErr
	}
	if pErr != nil {
		return nil, pErr
	}
	return c.HeldFrom(ctx, user, doc, groups)
}

// HeldFrom is Read for a caller that has listed the user's groups (all of
// them, or only keyvend's) and read its keyvend user policy (nil: none)
// itself. It reads the policies of prefixed grant groups.
func (c *Carrier) HeldFrom(ctx context.Context, user string, doc *string, groups []iamtypes.Group) (*Held, error) {
	var keyvend []iamtypes.Group
	for _, g := range groups {
		if aws.ToString(g.Path) == c.cfg.Path {
			keyvend = append(keyvend, g)
		}
	}
	h := &Held{Intact: true}
	if doc != nil {
		h.Policy = true
		gs, exact, err := policy.ParseUserDocument(c.cfg.Partition, aws.ToString(doc))
		if err != nil {
			c.log.WarnContext(ctx, "user policy does not carry keyvend grants", "user", user, "error", err.Error())
			h.Intact = false
		}
		h.PolicyExact = exact
		if !exact {
			h.Intact = false
		}
		h.Grants = append(h.Grants, gs...)
	}
	refs, intact, err := c.groupGrants(ctx, keyvend)
	if err != nil {
		return nil, err
	}
	h.Groups = refs
	h.GroupsIntact = intact
	h.Intact = h.Intact && intact
	for _, r := range refs {
		h.Grants = append(h.Grants, r.Grant)
	}
	h.Grants = dedupe(h.Grants)
	if len(h.Grants) == 0 {
		// Every keyvend user holds at least one grant: none readable
		// means they are missing, not absent.
		h.Intact = false
	}
	return h, nil
}

func dedupe(gs []policy.Grant) []policy.Grant {
	seen := map[policy.Grant]bool{}
	out := gs[:0]
	for _, g := range gs {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	policy.SortGrants(out)
	return out
}

// UserGroups lists every group user is in, keyvend's or not, reading all
// pages. Its error is IAM's, unwrapped (NoSuchEntity: no such user).
func UserGroups(ctx context.Context, api iam.ListGroupsForUserAPIClient, user string) ([]iamtypes.Group, error) {
	var out []iamtypes.Group
	p := iam.NewListGroupsForUserPaginator(api, &iam.ListGroupsForUserInput{UserName: &user})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Groups...)
	}
	return out, nil
}

// keyvendGroups lists the user's groups under the user path.
func (c *Carrier) keyvendGroups(ctx context.Context, user string) ([]iamtypes.Group, error) {
	all, err := UserGroups(ctx, c.iam, user)
	switch {
	case awserr.Is(err, "NoSuchEntity"):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("list groups of user %s: %w", user, err)
	}
	var out []iamtypes.Group
	for _, g := range all {
		if aws.ToString(g.Path) == c.cfg.Path {
			out = append(out, g)
		}
	}
	return out, nil
}

// groupGrants recovers the grant of each keyvend group and checks that
// the group grants exactly that: its inline policy is read (the prefix of
// a prefixed grant is only there) and must be keyvend's document for the
// grant (policy.ExactGroupDocument). intact is false when a group under
// the path does not carry exactly a keyvend grant — not keyvend's, its
// policy missing, or changed: a name says nothing of what a policy was
// rewritten to allow.
func (c *Carrier) groupGrants(ctx context.Context, groups []iamtypes.Group) (refs []GroupRef, intact bool, err error) {
	refs = make([]GroupRef, len(groups))
	ok := make([]bool, len(groups))
	exact := make([]bool, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		name := aws.ToString(g.GroupName)
		refs[i] = GroupRef{Name: name, ARN: aws.ToString(g.Arn)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.iam.GetGroupPolicy(ctx, &iam.GetGroupPolicyInput{GroupName: aws.String(name), PolicyName: aws.String(policy.InlinePolicyName)})
			switch {
			case awserr.Is(err, "NoSuchEntity"): // not a group keyvend made or fully configured
				c.log.WarnContext(ctx, "keyvend group without its policy", "group", name)
				return
			case err != nil:
				errs[i] = fmt.Errorf("read policy of group %s: %w", name, err)
				return
			}
			doc := aws.ToString(out.PolicyDocument)
			gr, err := policy.ParseGroup(c.cfg.Partition, name, doc)
			if err != nil {
				c.log.WarnContext(ctx, "group does not carry a keyvend grant", "group", name, "error", err.Error())
				return
			}
			refs[i].Grant, ok[i] = gr, true
			if exact[i] = policy.ExactGroupDocument(c.cfg.Partition, gr, doc); !exact[i] {
				c.log.WarnContext(ctx, "grant group's policy was changed outside keyvend", "group", name)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, false, firstErr(err)
	}
	intact = true
	out := refs[:0]
	for i, r := range refs {
		if ok[i] {
			out = append(out, r)
		}
		if !ok[i] || !exact[i] {
			intact = false
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, intact, nil
}

// firstErr unwraps an errors.Join to its first error, so callers see the
// failing step's own error.
func firstErr(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}
