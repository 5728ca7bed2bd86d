package provision

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/grants"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/state"
)

// Description is a managed user as keyvend sees it. No secret values.
type Description struct {
	User      string         `json:"user"`
	UserARN   string         `json:"user_arn"`
	UserID    string         `json:"user_id"`
	Path      string         `json:"path"`
	CreatedAt time.Time      `json:"created_at"`
	ExpiresAt *time.Time     `json:"expires_at,omitempty"`
	Requester string         `json:"requester"`
	Grants    []policy.Grant `json:"grants"`
	// GrantMode is how the user's grants reach IAM now: "policy", "group",
	// "mixed" (moving between them) or "" (none).
	GrantMode grants.Mode `json:"grant_mode"`
	// GrantsIntact is false when keyvend could not read every grant
	// exactly (a user policy or grant group changed outside keyvend): then
	// only its requester may act on it, and PUT grants restores it.
	GrantsIntact bool       `json:"grants_intact"`
	Groups       []GroupRef `json:"groups"`
	AccessKeys   []KeyInfo  `json:"access_keys"`
	SecretName   string     `json:"secret_name"`
	SecretARN    string     `json:"secret_arn,omitempty"`
	Complete     bool       `json:"complete"`
	// ExpiryCapped (PUT grants) is true when a rule's max_ttl shortened the
	// expiry.
	ExpiryCapped bool              `json:"expiry_capped,omitempty"`
	Tags         map[string]string `json:"tags"`
	// Rotation is the secret's rotation schedule (rules' rotate_every), when
	// the deployment has a rotation function (KEYVEND_ROTATION_FUNCTION_ARN).
	Rotation *RotationSchedule `json:"rotation,omitempty"`
	// Version is the user's record version in the state table: the ETag
	// of GET /v1/users/{name}, for If-Match on PUT grants and DELETE. 0 for
	// a user not yet recorded (vended before the table; reindex records it).
	Version int64 `json:"version"`
}

// KeyInfo is an access key's metadata; InSecret marks the one the user's
// secret holds.
type KeyInfo struct {
	AccessKeyID string    `json:"access_key_id"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	InSecret    bool      `json:"in_secret"`
}

// Describe returns the managed user name. The caller must be its requester
// or be allowed by a rule with the describe (or list) action on all of its
// grants; anyone else is told, as for a user that does not exist or that
// keyvend does not manage, KindNotFound.
func (s *Service) Describe(ctx context.Context, p caller.Principal, name string) (*Description, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	type got struct {
		rec *state.Record
		err error
	}
	recDone := make(chan got, 1)
	go func() {
		rec, err := s.store.Get(ctx, name)
		recDone <- got{rec, err}
	}()
	user, st, err := s.load(ctx, p, authz.Describe, name, allState)
	r := <-recDone
	if err != nil {
		return nil, err
	}
	d := s.describe(user, st)
	if st.secret != nil {
		d.Rotation = s.rotationOf(ctx, name)
	}
	switch {
	case r.err == nil:
		d.Version = r.rec.Version
	case !errors.Is(r.err, state.ErrNotFound):
		return nil, wrapf(r.err, "read the record of user %s", name)
	}
	return d, nil
}

// describe assembles a Description from what was read.
func (s *Service) describe(user *iamtypes.User, st *userState) *Description {
	name := aws.ToString(user.UserName)
	d := &Description{
		User:         name,
		UserARN:      aws.ToString(user.Arn),
		UserID:       aws.ToString(user.UserId),
		Path:         aws.ToString(user.Path),
		CreatedAt:    aws.ToTime(user.CreateDate),
		ExpiresAt:    expiryOf(user.Tags),
		Requester:    requesterOf(user),
		Grants:       st.held.Grants,
		GrantMode:    st.held.Mode(),
		GrantsIntact: st.held.Intact,
		Groups:       st.held.Groups,
		AccessKeys:   []KeyInfo{},
		SecretName:   s.SecretName(name),
		Complete:     st.complete(),
		Tags:         map[string]string{},
	}
	if d.Grants == nil {
		d.Grants = []policy.Grant{}
	}
	if d.Groups == nil {
		d.Groups = []GroupRef{}
	}
	if st.secret != nil {
		d.SecretARN = st.secret.ARN
	}
	for _, k := range st.keys {
		id := aws.ToString(k.AccessKeyId)
		d.AccessKeys = append(d.AccessKeys, KeyInfo{
			AccessKeyID: id,
			Status:      string(k.Status),
			CreatedAt:   aws.ToTime(k.CreateDate),
			InSecret:    st.secret != nil && st.secret.AccessKeyID == id,
		})
	}
	for _, t := range user.Tags {
		d.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if v, ok := d.Tags[TagRequester]; ok {
		d.Tags[TagRequester] = decodeRequester(v)
	}
	return d
}
