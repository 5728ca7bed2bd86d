package awstest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// GateTimeout bounds how long a gate holds a call: a test whose other side
// never comes fails on the call's error instead of hanging.
const GateTimeout = 30 * time.Second

// Gate holds calls of one operation, made through the configurations it
// is attached to, before they are sent — so a test decides the order of
// two requests' steps instead of hoping they overlap. Arrived is closed
// when the first held call arrives; Open lets every held and later call
// through.
type Gate struct {
	op      string
	once    sync.Once
	arrived chan struct{}
	open    chan struct{}
	opened  sync.Once
	n       int
	want    int
	mu      sync.Mutex
}

// HoldAll returns a gate on op, attached to cfg, that holds every call of
// op until Open.
func HoldAll(cfg *aws.Config, op string) *Gate {
	g := &Gate{op: op, arrived: make(chan struct{}), open: make(chan struct{})}
	g.attach(cfg)
	return g
}

// Barrier returns a gate on op, attached to every cfg, that holds the
// calls of op until n of them have arrived, then lets them all go at once:
// n requests are made to overlap at op, whatever the scheduler does.
func Barrier(op string, n int, cfgs ...*aws.Config) *Gate {
	g := &Gate{op: op, arrived: make(chan struct{}), open: make(chan struct{}), want: n}
	for _, c := range cfgs {
		g.attach(c)
	}
	return g
}

// Arrived is closed once a call of the gate's operation is held.
func (g *Gate) Arrived() <-chan struct{} { return g.arrived }

// Open lets every held call, and every later one, through.
func (g *Gate) Open() { g.opened.Do(func() { close(g.open) }) }

// Wait blocks until a call has arrived at the gate, or fails after
// GateTimeout.
func (g *Gate) Wait(tb interface{ Fatalf(string, ...any) }) {
	select {
	case <-g.arrived:
	case <-time.After(GateTimeout):
		tb.Fatalf("no %s call arrived at the gate within %s", g.op, GateTimeout)
	}
}

// Attach adds the gate to cfg (for a test harness's instrument hook).
func (g *Gate) Attach(cfg *aws.Config) { g.attach(cfg) }

func (g *Gate) attach(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awstest.Gate."+g.op,
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetOperationName(ctx) == g.op {
					if err := g.hold(ctx); err != nil {
						return middleware.InitializeOutput{}, middleware.Metadata{}, err
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
}

func (g *Gate) hold(ctx context.Context) error {
	g.once.Do(func() { close(g.arrived) })
	if g.want > 0 {
		g.mu.Lock()
		g.n++
		if g.n >= g.want {
			g.Open()
		}
		g.mu.Unlock()
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(GateTimeout):
		return fmt.Errorf("awstest: %s held at its gate for %s and never let through", g.op, GateTimeout)
	}
}
