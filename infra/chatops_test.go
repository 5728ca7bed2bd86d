package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyvend/keyvend/pkg/app"
	"github.com/keyvend/keyvend/pkg/chatops"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/slacksig"
)

// The Slack command's parts: present only with slackSigningSecretArn.

func TestChatopsNotDeployedWithoutTheSecret(t *testing.T) {
	s := defaultStack(t)
	for _, typ := range []string{"AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::Lambda::EventSourceMapping"} {
		if n := len(s.resources(typ)); n != 0 {
			t.Errorf("%d %s without slackSigningSecretArn", n, typ)
		}
	}
	if n := len(s.resources("AWS::Lambda::Function")); n != len(Functions) {
		t.Errorf("%d functions, want %d", n, len(Functions))
	}
	for _, r := range s.resources("AWS::ApiGatewayV2::Route") {
		if p := r["Properties"].(map[string]any); p["RouteKey"] == "POST "+chatops.Path || p["RouteKey"] == "POST "+chatops.InteractivePath || p["AuthorizationType"] == "NONE" {
			t.Errorf("route %v %v without slackSigningSecretArn", p["RouteKey"], p["AuthorizationType"])
		}
	}
	for _, o := range []string{"SlackCommandUrl", "SlackInteractivityUrl"} {
		if _, ok := s.JSON["Outputs"].(map[string]any)[o]; ok {
			t.Errorf("%s output without slackSigningSecretArn", o)
		}
	}
}

// TestChatopsRouteIsTheOnlyOneWithoutAuthorizer: the Slack route goes to
// the slack function with authorization NONE; every other route keeps its
// authorizer, IAM or JWT.
func TestChatopsRouteIsTheOnlyOneWithoutAuthorizer(t *testing.T) {
	jwt, err := synthWith(t, map[string]any{"slackSigningSecretArn": testSigningSecretARN,
		"jwtIssuer": "https://login.example.com/", "jwtAudience": "keyvend"})
	if err != nil {
		t.Fatal(err)
	}
	for mode, s := range map[string]*synthesized{"AWS_IAM": slackStack(t), "JWT": jwt} {
		got := map[string]string{}
		slackTargets := map[string]string{}
		for _, r := range s.resources("AWS::ApiGatewayV2::Route") {
			p := r["Properties"].(map[string]any)
			key := p["RouteKey"].(string)
			got[key] = p["AuthorizationType"].(string)
			_, hasAuthorizer := p["AuthorizerId"]
			slackRoute := key == "POST "+chatops.Path || key == "POST "+chatops.InteractivePath
			if (mode == "JWT" && !slackRoute) != hasAuthorizer {
				t.Errorf("%s: route %s authorizer id %v", mode, key, p["AuthorizerId"])
			}
			if slackRoute {
				target := p["Target"].(map[string]any)["Fn::Join"].([]any)[1].([]any)[1].(map[string]any)["Ref"].(string)
				slackTargets[key] = mustJSON(s.props(target)["IntegrationUri"])
			}
		}
		want := map[string]string{"POST " + chatops.Path: "NONE", "POST " + chatops.InteractivePath: "NONE"}
		for _, r := range httpapi.Routes() {
			want[r.String()] = mode
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s routes:\n got %v\nwant %v", mode, got, want)
		}
		if len(slackTargets) != 2 {
			t.Errorf("%s: Slack routes %v, want the slash command's and the interactivity endpoint's", mode, slackTargets)
		}
		for key, target := range slackTargets {
			if !strings.Contains(target, s.id(s.K.Functions[FnSlack])) {
				t.Errorf("%s: the Slack route %s's integration is %s, not the slack function", mode, key, target)
			}
		}
		if n := len(s.resources("AWS::ApiGatewayV2::Integration")); n != 2 {
			t.Errorf("%s: %d integrations, want the api's and the slack function's", mode, n)
		}
		for _, h := range httpapi.Routes() {
			if h.String() == "POST "+chatops.Path || strings.HasPrefix(h.Path, chatops.Path) {
				t.Errorf("httpapi.Routes() lists the Slack route %s: it must stay out of the API handler", h)
			}
		}
	}
}

// TestChatopsQueues: encrypted queues, a redrive after chatopsMaxReceives
// deliveries that the worker knows, a visibility timeout the event source
// accepts, TLS only, and only the slack function's role may send.
func TestChatopsQueues(t *testing.T) {
	s := slackStack(t)
	queues := s.resources("AWS::SQS::Queue")
	if len(queues) != 2 {
		t.Fatalf("%d queues", len(queues))
	}
	qID, dlqID := s.id(s.K.Queue), s.id(s.K.DeadLetterQueue)
	q, dlq := s.props(qID), s.props(dlqID)
	if q["SqsManagedSseEnabled"] != true || dlq["SqsManagedSseEnabled"] != true {
		t.Errorf("queues not encrypted: %v / %v", q, dlq)
	}
	redrive := q["RedrivePolicy"].(map[string]any)
	if !reflect.DeepEqual(redrive["deadLetterTargetArn"], map[string]any{"Fn::GetAtt": []any{dlqID, "Arn"}}) || redrive["maxReceiveCount"] != float64(chatopsMaxReceives) {
		t.Errorf("redrive %v", redrive)
	}
	// AWS's guidance for an SQS event source: a visibility timeout of at
	// least six times the function's timeout. And every try must still
	// answer Slack: the last one ends within the 30 minutes a
	// response_url stays valid.
	v := q["VisibilityTimeout"].(float64)
	if v < 6*timeouts[FnWorker] {
		t.Errorf("visibility timeout %v below 6x the worker's timeout %v", v, timeouts[FnWorker])
	}
	if last := float64(chatopsMaxReceives-1)*v + timeouts[FnWorker]; last > 30*60 {
		t.Errorf("the last of %d tries ends %v s after the first starts, past Slack's 30-minute response_url", chatopsMaxReceives, last)
	}
	if dlq["MessageRetentionPeriod"] != float64(14*24*3600) {
		t.Errorf("dead-letter retention %v", dlq["MessageRetentionPeriod"])
	}
	workerEnv := s.props(s.id(s.K.Functions[FnWorker]))["Environment"].(map[string]any)["Variables"].(map[string]any)
	if workerEnv["KEYVEND_CHATOPS_MAX_RECEIVES"] != strconv.Itoa(chatopsMaxReceives) {
		t.Errorf("worker KEYVEND_CHATOPS_MAX_RECEIVES %v, queue maxReceiveCount %d", workerEnv["KEYVEND_CHATOPS_MAX_RECEIVES"], chatopsMaxReceives)
	}

	slackRole := map[string]any{"Fn::GetAtt": []any{s.id(s.K.Roles[FnSlack]), "Arn"}}
	policies := map[string][]any{}
	for _, p := range s.resources("AWS::SQS::QueuePolicy") {
		props := p["Properties"].(map[string]any)
		queue := props["Queues"].([]any)[0].(map[string]any)["Ref"].(string)
		policies[queue] = props["PolicyDocument"].(map[string]any)["Statement"].([]any)
	}
	for _, id := range []string{qID, dlqID} {
		tls := false
		for _, st := range policies[id] {
			m := st.(map[string]any)
			if m["Effect"] == "Deny" && m["Action"] == "sqs:*" && mustJSON(m["Condition"]) == `{"Bool":{"aws:SecureTransport":"false"}}` {
				tls = true
			}
		}
		if !tls {
			t.Errorf("queue %s: no Deny of plain-HTTP access", id)
		}
	}
	only := false
	for _, st := range policies[qID] {
		m := st.(map[string]any)
		if m["Sid"] == "OnlyTheSlackFunctionQueuesJobs" {
			only = m["Effect"] == "Deny" && m["Action"] == "sqs:SendMessage" && mustJSON(m["Principal"]) == `{"AWS":"*"}` &&
				reflect.DeepEqual(m["Condition"], map[string]any{"ArnNotEquals": map[string]any{"aws:PrincipalArn": slackRole}}) &&
				reflect.DeepEqual(m["Resource"], map[string]any{"Fn::GetAtt": []any{qID, "Arn"}})
		}
	}
	if !only {
		t.Errorf("the job queue's policy does not deny SendMessage to every principal but the slack role: %s", mustJSON(policies[qID]))
	}
}

func TestChatopsWorkerEventSource(t *testing.T) {
	s := slackStack(t)
	maps := s.resources("AWS::Lambda::EventSourceMapping")
	if len(maps) != 1 {
		t.Fatalf("%d event source mappings", len(maps))
	}
	for _, m := range maps {
		p := m["Properties"].(map[string]any)
		if !reflect.DeepEqual(p["FunctionName"], map[string]any{"Ref": s.id(s.K.Functions[FnWorker])}) ||
			!reflect.DeepEqual(p["EventSourceArn"], map[string]any{"Fn::GetAtt": []any{s.id(s.K.Queue), "Arn"}}) ||
			!reflect.DeepEqual(p["FunctionResponseTypes"], []any{"ReportBatchItemFailures"}) ||
			p["BatchSize"] != float64(chatopsBatchSize) {
			t.Errorf("event source mapping %v", p)
		}
	}
}

func TestChatopsFunctions(t *testing.T) {
	s := slackStack(t)
	if n := len(s.resources("AWS::Lambda::Function")); n != len(AllFunctions) {
		t.Errorf("%d functions, want %d", n, len(AllFunctions))
	}
	queueURL := map[string]any{"Ref": s.id(s.K.Queue)}
	for fn, want := range map[string]map[string]any{
		FnSlack:  {"KEYVEND_RULES": RulesPathInLambda, "KEYVEND_SLACK_SIGNING_SECRET_ARN": testSigningSecretARN, "KEYVEND_CHATOPS_QUEUE_URL": queueURL, "KEYVEND_GRANT_MODE": "policy"},
		FnWorker: {"KEYVEND_RULES": RulesPathInLambda, "KEYVEND_CHATOPS_MAX_RECEIVES": "3", "KEYVEND_GRANT_MODE": "policy"},
	} {
		p := s.props(s.id(s.K.Functions[fn]))
		if !reflect.DeepEqual(p["TracingConfig"], map[string]any{"Mode": "Active"}) {
			t.Errorf("%s: tracing %v, want active X-Ray tracing", fn, p["TracingConfig"])
		}
		if p["Timeout"] != timeouts[fn] || p["Runtime"] != "provided.al2023" || p["MemorySize"] != float64(256) {
			t.Errorf("%s: timeout %v runtime %v memory %v", fn, p["Timeout"], p["Runtime"], p["MemorySize"])
		}
		env := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		for k, v := range want {
			if !reflect.DeepEqual(env[k], v) {
				t.Errorf("%s env %s = %v, want %v", fn, k, env[k], v)
			}
		}
		if env["KEYVEND_BOUNDARY_ARN"] == nil || env["KEYVEND_SLACK_SIGNING_SECRET"] != nil || env["KEYVEND_SLACK_RESPONSE_HOSTS"] != nil {
			t.Errorf("%s env %v: want the boundary, never a literal signing secret, the default response host", fn, env)
		}
		rules, err := os.ReadFile(filepath.Join(s.DistDir, ".bundle", fn, "rules.json"))
		root, _ := RepoRoot()
		demo, _ := os.ReadFile(filepath.Join(root, "rules", "demo.json"))
		if err != nil || string(rules) != string(demo) {
			t.Errorf("%s bundle: rules.json %v", fn, err)
		}
	}
	if timeouts[FnSlack] > 29 {
		t.Errorf("slack timeout %v exceeds what API Gateway waits", timeouts[FnSlack])
	}
	outputs := s.JSON["Outputs"].(map[string]any)
	if u := mustJSON(outputs["SlackInteractivityUrl"]); !strings.Contains(u, chatops.InteractivePath) {
		t.Errorf("SlackInteractivityUrl output %s", u)
	}
	if u := mustJSON(outputs["SlackCommandUrl"]); !strings.Contains(u, chatops.Path) {
		t.Errorf("SlackCommandUrl output %s", u)
	}
}

func TestChatopsAlarms(t *testing.T) {
	s := slackStack(t)
	var got []string
	for _, a := range s.resources("AWS::CloudWatch::Alarm") {
		p := a["Properties"].(map[string]any)
		got = append(got, alarmSignature(p))
		if p["MetricName"] == "ApproximateNumberOfMessagesVisible" &&
			(p["Threshold"] != float64(1) || p["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" || p["Statistic"] != "Maximum") {
			t.Errorf("dead-letter alarm %v", p)
		}
	}
	sort.Strings(got)
	var want []string
	for _, fn := range AllFunctions {
		id := s.id(s.K.Functions[fn])
		want = append(want,
			`AWS/Lambda/Errors [{"Name":"FunctionName","Value":{"Ref":"`+id+`"}}]`,
			`AWS/Lambda/Throttles [{"Name":"FunctionName","Value":{"Ref":"`+id+`"}}]`)
	}
	want = append(want, `AWS/ApiGateway/5xx [{"Name":"ApiId","Value":{"Ref":"`+s.id(s.K.API)+`"}}]`,
		`keyvend/keyvend/SlackUnauthenticated null`,
		`AWS/Lambda/Invocations [{"Name":"FunctionName","Value":{"Ref":"`+s.id(s.K.Functions[FnReaper])+`"}}]`,
		`AWS/SQS/ApproximateNumberOfMessagesVisible [{"Name":"QueueName","Value":{"Fn::GetAtt":["`+s.id(s.K.DeadLetterQueue)+`","QueueName"]}}]`,
		stateThrottlesSignature)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alarms:\n got %v\nwant %v", got, want)
	}
}

// TestChatopsNag: nothing unsuppressed in the stack with the Slack parts;
// APIG4 is suppressed on the Slack route alone.
func TestChatopsNag(t *testing.T) {
	// Both grant modes: their role policies differ.
	for mode, s := range modeStacks(t) {
		ann := assertions.Annotations_FromStack(s.K.Stack)
		match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		for _, m := range *ann.FindError(jsii.String("*"), match) {
			t.Errorf("%s mode: cdk-nag error at %s: %v", mode, *m.Id, m.Entry.Data)
		}
		for _, m := range *ann.FindWarning(jsii.String("*"), match) {
			t.Errorf("%s mode: cdk-nag warning at %s: %v", mode, *m.Id, m.Entry.Data)
		}
	}
	s := slackStack(t)
	apig4 := 0
	for _, sup := range NagSuppressions(s.K, mustConfig(t, s)) {
		if sup.Rule == "AwsSolutions-APIG4" {
			apig4++
			if sup.Construct != *s.K.API.Node().Id()+"/"+slackRouteID && sup.Construct != *s.K.API.Node().Id()+"/"+slackInteractiveRouteID {
				t.Errorf("APIG4 suppressed on %s", sup.Construct)
			}
		}
		if len(sup.Reason) < 80 || !strings.Contains(sup.Reason, "keyvend") && !strings.Contains(sup.Reason, "rules") {
			t.Errorf("suppression %s on %s: reason too thin: %q", sup.Rule, sup.Construct, sup.Reason)
		}
	}
	if apig4 != 2 {
		t.Errorf("%d APIG4 suppressions, want 2 (the slash command's route and the interactivity endpoint's)", apig4)
	}
	// The routes the suppressions name are those the stack has.
	found := map[bool]bool{}
	for id := range s.resources("AWS::ApiGatewayV2::Route") {
		if strings.HasPrefix(id, "HttpApiPOSTv1chatopsslack") {
			found[strings.HasPrefix(id, "HttpApiPOSTv1chatopsslackinteractive")] = true
		}
	}
	if !found[false] || !found[true] {
		t.Error("no HttpApi/" + slackRouteID + " or HttpApi/" + slackInteractiveRouteID + " route")
	}
}

func TestChatopsConfigProblemsFailSynth(t *testing.T) {
	for name, arn := range map[string]string{
		"not an ARN":            "keyvend/slack-signing",
		"no 6-character suffix": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:slack",
		"another service":       "arn:aws:ssm:eu-west-1:111122223333:parameter/slack-signing-AbCdEf",
		"a wildcard":            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:*",
		"under the user prefix": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyvend/users/slack-AbCdEf",
	} {
		if _, err := synthWith(t, map[string]any{"slackSigningSecretArn": arn}); err == nil || !strings.Contains(err.Error(), "slackSigningSecretArn") {
			t.Errorf("%s: synth error %v", name, err)
		}
	}
}

// TestChatopsRouteThrottle: the unauthenticated Slack route has its own,
// lower throttle (slackThrottleRateLimit/slackThrottleBurstLimit), so a
// flood of unsigned requests cannot spend the stage's budget; the stage
// waits for the route (a route setting needs the route to exist).
func TestChatopsRouteThrottle(t *testing.T) {
	custom, err := synthWith(t, map[string]any{"slackSigningSecretArn": testSigningSecretARN,
		"slackThrottleRateLimit": "2", "slackThrottleBurstLimit": "3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		s           *synthesized
		rate, burst float64
	}{{slackStack(t), 5, 10}, {custom, 2, 3}} {
		stages := c.s.resources("AWS::ApiGatewayV2::Stage")
		if len(stages) != 1 {
			t.Fatalf("%d stages", len(stages))
		}
		var slackRoute, clickRoute string
		for id, r := range c.s.resources("AWS::ApiGatewayV2::Route") {
			switch r["Properties"].(map[string]any)["RouteKey"] {
			case "POST " + chatops.Path:
				slackRoute = id
			case "POST " + chatops.InteractivePath:
				clickRoute = id
			}
		}
		for _, st := range stages {
			throttle := map[string]any{"ThrottlingRateLimit": c.rate, "ThrottlingBurstLimit": c.burst}
			want := map[string]any{"POST " + chatops.Path: throttle, "POST " + chatops.InteractivePath: throttle}
			if got := st["Properties"].(map[string]any)["RouteSettings"]; !reflect.DeepEqual(got, want) {
				t.Errorf("stage route settings %s, want %s", mustJSON(got), mustJSON(want))
			}
			deps, _ := strs(st["DependsOn"])
			if slackRoute == "" || !slices.Contains(deps, slackRoute) || clickRoute == "" || !slices.Contains(deps, clickRoute) {
				t.Errorf("stage depends on %v, not on the Slack routes %q and %q", deps, slackRoute, clickRoute)
			}
		}
	}
	for _, st := range defaultStack(t).resources("AWS::ApiGatewayV2::Stage") {
		if rs, ok := st["Properties"].(map[string]any)["RouteSettings"]; ok {
			t.Errorf("route settings %v without the Slack command", rs)
		}
	}
	for name, ctx := range map[string]map[string]any{
		"zero rate":    {"slackThrottleRateLimit": 0},
		"zero burst":   {"slackThrottleBurstLimit": 0},
		"not a number": {"slackThrottleRateLimit": "fast"},
	} {
		ctx["slackSigningSecretArn"] = testSigningSecretARN
		if _, err := synthWith(t, ctx); err == nil || !strings.Contains(err.Error(), "slackThrottle") {
			t.Errorf("%s: synth error %v", name, err)
		}
	}
}

// TestChatopsUnauthenticatedAlarm: a metric filter on the slack
// function's log group counts its audit lines for unauthenticated
// requests, and an alarm fires at 20 in 5 minutes (someone is probing the
// one route without an authorizer). The filter's fields are those of the
// audit line the endpoint really writes.
func TestChatopsUnauthenticatedAlarm(t *testing.T) {
	s := slackStack(t)
	const pattern = `{ (($.action = "chatops.slack") || ($.action = "chatops.slack.interactive")) && ($.result = "unauthenticated") }`
	slackLogs := s.props(s.id(s.K.Functions[FnSlack]))["LoggingConfig"].(map[string]any)["LogGroup"].(map[string]any)["Ref"].(string)
	filters := s.resources("AWS::Logs::MetricFilter")
	if len(filters) != 1 {
		t.Fatalf("%d metric filters, want 1", len(filters))
	}
	var namespace, name string
	for _, f := range filters {
		p := f["Properties"].(map[string]any)
		if p["FilterPattern"] != pattern || !reflect.DeepEqual(p["LogGroupName"], map[string]any{"Ref": slackLogs}) {
			t.Errorf("metric filter %s on %v", p["FilterPattern"], p["LogGroupName"])
		}
		m := p["MetricTransformations"].([]any)[0].(map[string]any)
		namespace, name = m["MetricNamespace"].(string), m["MetricName"].(string)
		if m["MetricValue"] != "1" {
			t.Errorf("metric transformation %v", m)
		}
	}
	found := 0
	for _, a := range s.resources("AWS::CloudWatch::Alarm") {
		p := a["Properties"].(map[string]any)
		if p["Namespace"] != namespace || p["MetricName"] != name {
			continue
		}
		found++
		for k, v := range map[string]any{"Statistic": "Sum", "Period": float64(300), "EvaluationPeriods": float64(1),
			"Threshold": float64(20), "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching"} {
			if p[k] != v {
				t.Errorf("unauthenticated alarm %s = %v, want %v", k, p[k], v)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d alarms on %s/%s, want 1", found, namespace, name)
	}
	for _, f := range defaultStack(t).resources("AWS::Logs::MetricFilter") {
		t.Errorf("metric filter %v without the Slack command", f["Properties"])
	}

	// The audit line of an unsigned request, as the slack function logs
	// it (app.LoggerTo: JSON on stdout, one object per line).
	var buf bytes.Buffer
	e := &chatops.Endpoint{Verifier: &slacksig.Verifier{Secret: slacksig.StaticSecret("not-used")}, Log: app.LoggerTo(&buf)}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, chatops.Path, strings.NewReader("command=/keyvend&text=help")))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || rec.Code != http.StatusUnauthorized {
		t.Fatalf("audit line %q (%v), status %d", buf.String(), err, rec.Code)
	}
	if line["action"] != "chatops.slack" || line["result"] != "unauthenticated" {
		t.Errorf("the audit line %s does not carry the fields the filter %s selects", buf.String(), pattern)
	}
	buf.Reset()
	rec = httptest.NewRecorder()
	e.Routes().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, chatops.InteractivePath, strings.NewReader("payload={}")))
	line = nil
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || rec.Code != http.StatusUnauthorized {
		t.Fatalf("interactive audit line %q (%v), status %d", buf.String(), err, rec.Code)
	}
	if line["action"] != "chatops.slack.interactive" || line["result"] != "unauthenticated" {
		t.Errorf("the audit line %s does not carry the fields the filter %s selects", buf.String(), pattern)
	}
}
