package provision

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/policy"
)

// audit logs one JSON line for a change: who (principal, as rules match
// it; requester, exactly as authenticated: an assumed-role session), what,
// to whom, the outcome and how long it took. It never logs a secret: grants and ids only.
// Call it deferred, with a pointer to the method's named error result.
func (s *Service) audit(ctx context.Context, start time.Time, action string, p caller.Principal, requestID, user string, grants []policy.Grant, errp *error) {
	result := "ok"
	attrs := []slog.Attr{}
	if errp != nil && *errp != nil {
		result = resultOf(*errp)
		attrs = append(attrs, slog.String("error", (*errp).Error()))
	}
	gs := make([]string, len(grants))
	for i, g := range grants {
		gs[i] = g.Bucket + ":" + string(g.Access) + ":" + g.Prefix
	}
	attrs = append(attrs,
		slog.String("action", action),
		slog.String("request_id", requestID),
		slog.String("principal", p.ID),
		slog.String("requester", p.Requester()),
		slog.String("user", user),
		slog.Any("grants", gs),
		slog.String("result", result),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	)
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}

// resultOf is the audit line's result for a failed call: its kind's name.
// A refused If-Match (KindPrecondition) has always been logged as "error";
// it stays so (no behaviour change in this refactor).
func resultOf(err error) string {
	var pending *Pending
	if errors.As(err, &pending) {
		return "pending"
	}
	if k := KindOf(err); k != KindPrecondition {
		return k.String()
	}
	return "error"
}
