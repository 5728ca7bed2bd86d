package main

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// Service IDs as the SDK names them.
const (
	svcIAM     = "IAM"
	svcSecrets = "Secrets Manager"
	svcDynamo  = "DynamoDB"
)

// timedCall is one AWS call as its caller saw it: when it started and
// ended (retries included), and for a state-table call which item or
// partition it named (keyOf).
type timedCall struct {
	Service, Operation string
	Key                string
	Start, End         time.Time
	Err                error
}

// timeline records the calls made through configurations it is attached
// to between Start and Stop, each with its start and end: the critical
// path of one operation is read from it (criticalPath).
type timeline struct {
	mu    sync.Mutex
	on    bool
	calls []timedCall
}

// Attach adds the timeline to cfg's middleware stack.
func (t *timeline) Attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("keyvend-bench.Timeline",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c := timedCall{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx), Key: keyOf(in.Parameters), Start: time.Now()}
				out, md, err := next.HandleInitialize(ctx, in)
				c.End, c.Err = time.Now(), err
				t.mu.Lock()
				if t.on {
					t.calls = append(t.calls, c)
				}
				t.mu.Unlock()
				return out, md, err
			}), middleware.Before)
	})
}

// Start forgets the calls recorded and records from now on.
func (t *timeline) Start() {
	t.mu.Lock()
	t.calls, t.on = nil, true
	t.mu.Unlock()
}

// Stop stops recording and returns the calls that ended since Start, by
// start.
func (t *timeline) Stop() []timedCall {
	t.mu.Lock()
	out := append([]timedCall(nil), t.calls...)
	t.calls, t.on = nil, false
	t.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// keyOf names what a state-table call reads or writes: "pk sk" of an item,
// the partition (":pk") of a query; "" for other calls.
func keyOf(params any) string {
	s := func(v types.AttributeValue) string {
		if sv, ok := v.(*types.AttributeValueMemberS); ok {
			return sv.Value
		}
		return ""
	}
	switch in := params.(type) {
	case *dynamodb.GetItemInput:
		return s(in.Key["pk"]) + " " + s(in.Key["sk"])
	case *dynamodb.PutItemInput:
		return s(in.Item["pk"]) + " " + s(in.Item["sk"])
	case *dynamodb.UpdateItemInput:
		return s(in.Key["pk"]) + " " + s(in.Key["sk"])
	case *dynamodb.DeleteItemInput:
		return s(in.Key["pk"]) + " " + s(in.Key["sk"])
	case *dynamodb.QueryInput:
		return s(in.ExpressionAttributeValues[":pk"])
	}
	return ""
}

// criticalPath is the longest chain of calls each of which started after
// the one before it ended: the round trips the operation waited for one
// after another. Of equally long chains it takes the one with the fewest
// state-table calls (a table write that overlapped an IAM call of the same
// round is beside it, not on the path), then the one through the calls
// that ended last before the next began (what each step waited for).
func criticalPath(calls []timedCall) []timedCall {
	n := len(calls)
	if n == 0 {
		return nil
	}
	type best struct{ length, dynamo, prev int }
	dp := make([]best, n)
	for i, c := range calls {
		dp[i] = best{1, isDynamo(c), -1}
		for j := range i {
			if calls[j].End.After(c.Start) {
				continue
			}
			cand := best{dp[j].length + 1, dp[j].dynamo + isDynamo(c), j}
			switch {
			case cand.length != dp[i].length:
				if cand.length > dp[i].length {
					dp[i] = cand
				}
			case cand.dynamo != dp[i].dynamo:
				if cand.dynamo < dp[i].dynamo {
					dp[i] = cand
				}
			case dp[i].prev < 0 || calls[j].End.After(calls[dp[i].prev].End):
				dp[i] = cand // the call it waited for: the last to end before it
			}
		}
	}
	end := 0
	for i := range dp {
		if dp[i].length > dp[end].length || dp[i].length == dp[end].length && dp[i].dynamo < dp[end].dynamo {
			end = i
		}
	}
	var path []timedCall
	for i := end; i >= 0; i = dp[i].prev {
		path = append(path, calls[i])
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path
}

func isDynamo(c timedCall) int {
	if c.Service == svcDynamo {
		return 1
	}
	return 0
}

// pathString renders a critical path as "A → B → C".
func pathString(path []timedCall) string {
	ops := make([]string, len(path))
	for i, c := range path {
		ops[i] = c.Operation
	}
	return strings.Join(ops, " → ")
}

// perService counts calls by service: IAM, Secrets Manager, DynamoDB (and
// any other, by its name).
func perService(calls []timedCall) map[string]int {
	out := map[string]int{}
	for _, c := range calls {
		out[c.Service]++
	}
	return out
}
