package awstest

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyvend/keyvend/pkg/awsclient"
	"github.com/keyvend/keyvend/pkg/state"
)

// TestClosedBodyRace: a PutItem that moto applies and answers 200 returns
// no error, even when the answer arrives before net/http's write loop is
// done with the request body — the race behind the "use of closed network
// connection" flake of the reaper tests (see awsclient.OwnBodies). The test makes
// the race happen every time instead of one run in four: its connection
// holds the write loop right after the request's last byte went out until
// the SDK has the answer's headers (and has closed its request body), and
// holds the read of the answer's body until the write loop has had its
// turn (it closes the connection, or 500ms pass). With the SDK's own
// client the call fails, as in the flake; with keyvend's (OwnBodies, in
// awsclient.Load and in Config) it succeeds.
func TestClosedBodyRace(t *testing.T) {
	srv := Shared(t)
	ctx := context.Background()
	table := Name("closed-body")
	if err := state.CreateTable(ctx, dynamodb.NewFromConfig(Config(t, srv.URL)), table); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		client func(aws.HTTPClient) aws.HTTPClient
		fails  bool
	}{
		{"sdk client", func(c aws.HTTPClient) aws.HTTPClient { return c }, true},
		{"keyvend client (awsclient.OwnBodies)", func(c aws.HTTPClient) aws.HTTPClient { return awsclient.OwnBodies(c) }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			race := &bodyRace{answered: make(chan struct{}), resumed: make(chan struct{}), closed: make(chan struct{})}
			cfg := Config(t, srv.URL)
			cfg.HTTPClient = c.client(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
				d := &net.Dialer{}
				tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := d.DialContext(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					return &raceConn{Conn: conn, race: race}, nil
				}
			}))
			// Innermost in the deserialize step: it sees the SDK's HTTP
			// handler return, which closes the request body.
			cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
				return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("awstest.test.answered",
					func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
						out, md, err := next.HandleDeserialize(ctx, in)
						race.once.Do(func() { close(race.answered) })
						return out, md, err
					}), middleware.After)
			})
			user := Name("user")
			_, err := dynamodb.NewFromConfig(cfg).PutItem(ctx, &dynamodb.PutItemInput{
				TableName: &table,
				Item: map[string]ddbtypes.AttributeValue{
					"pk": &ddbtypes.AttributeValueMemberS{Value: user},
					"sk": &ddbtypes.AttributeValueMemberS{Value: "record"},
				},
				ConditionExpression: aws.String("attribute_not_exists(pk)"),
			})
			switch {
			case c.fails && (err == nil || !strings.Contains(err.Error(), "use of closed network connection")):
				t.Fatalf("PutItem: %v, want the flake's error (use of closed network connection): "+
					"if the SDK no longer closes its request body under net/http, ownBodies can go", err)
			case !c.fails && err != nil:
				t.Fatalf("PutItem: %v", err)
			}
			// Either way moto applied the write: reporting a failure lies.
			got, err := dynamodb.NewFromConfig(Config(t, srv.URL)).GetItem(ctx, &dynamodb.GetItemInput{
				TableName: &table,
				Key: map[string]ddbtypes.AttributeValue{
					"pk": &ddbtypes.AttributeValueMemberS{Value: user},
					"sk": &ddbtypes.AttributeValueMemberS{Value: "record"},
				},
			})
			if err != nil || got.Item == nil {
				t.Fatalf("GetItem = %v, %v; want the item moto wrote", got, err)
			}
		})
	}
}

// bodyRace orders the steps of one request (see TestClosedBodyRace).
type bodyRace struct {
	once     sync.Once
	answered chan struct{} // the SDK's HTTP handler returned
	resumed  chan struct{} // the held write returned to net/http
	closed   chan struct{} // net/http closed the connection
	resuming sync.Once
	closing  sync.Once
}

// raceConn is a loopback connection to moto that holds net/http's write
// loop after the request's last byte, and hands the answer to its reader
// in two parts: the status line and headers, then (once the write loop
// has had its turn) the body.
type raceConn struct {
	net.Conn
	race *bodyRace

	sent    bytes.Buffer // the request, as written
	held    bool
	got     bytes.Buffer // the answer, as read from moto
	headers bool         // the headers were read
	head    []byte       // the status line and headers, not yet handed out
	waited  bool         // the body's read waited for the write loop
	rest    []byte       // what moto sent after the headers, not yet handed out
}

func (c *raceConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Write(b[:n])
	if err == nil && !c.held && requestComplete(c.sent.Bytes()) {
		c.held = true
		select {
		case <-c.race.answered:
		case <-time.After(5 * time.Second):
		}
		c.race.resuming.Do(func() { close(c.race.resumed) })
	}
	return n, err
}

func (c *raceConn) Read(b []byte) (int, error) {
	if !c.headers {
		for {
			if i := bytes.Index(c.got.Bytes(), []byte("\r\n\r\n")); i >= 0 {
				c.headers = true
				c.head = bytes.Clone(c.got.Bytes()[:i+4])
				c.rest = bytes.Clone(c.got.Bytes()[i+4:])
				break
			}
			buf := make([]byte, 4096)
			n, err := c.Conn.Read(buf)
			c.got.Write(buf[:n])
			if err != nil {
				return 0, err
			}
		}
	}
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	if !c.waited {
		c.waited = true
		<-c.race.resumed
		select {
		case <-c.race.closed:
			// What moto sent that was not read yet is lost with the
			// connection: the read fails as it did in the flake.
			c.rest = nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *raceConn) Close() error {
	c.race.closing.Do(func() { close(c.race.closed) })
	return c.Conn.Close()
}

// requestComplete reports whether req holds a whole request: headers and
// Content-Length bytes of body.
func requestComplete(req []byte) bool {
	i := bytes.Index(req, []byte("\r\n\r\n"))
	if i < 0 {
		return false
	}
	for _, line := range strings.Split(string(req[:i]), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return err == nil && len(req) >= i+4+n
		}
	}
	return true
}
