package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/httpapi"
)

func TestCdkJSONListsEveryContextKeyWithItsDefault(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := cdkJSONContext(root)
	if err != nil {
		t.Fatal(err)
	}
	flags := 0
	for k, v := range ctx {
		if strings.HasPrefix(k, "@aws-cdk") || strings.HasPrefix(k, "@aws-cdk-containers") {
			flags++
			continue
		}
		def, ok := ContextDefaults[k]
		if !ok {
			t.Errorf("cdk.json context key %s is not read by the app", k)
			continue
		}
		// JSON numbers decode as float64; compare through JSON.
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(def)
		if string(a) != string(b) {
			t.Errorf("cdk.json %s = %s, the app's default is %s", k, a, b)
		}
	}
	for k := range ContextDefaults {
		if _, ok := ctx[k]; !ok {
			t.Errorf("cdk.json does not list context key %s", k)
		}
	}
	if flags < 80 {
		t.Errorf("cdk.json has %d feature flags; want aws-cdk-lib's recommended set", flags)
	}
	var doc struct {
		App string `json:"app"`
	}
	b, _ := os.ReadFile(filepath.Join(root, "cdk.json"))
	_ = json.Unmarshal(b, &doc)
	if doc.App != "cd infra && go run ." {
		t.Errorf("cdk.json app = %q", doc.App)
	}
}

func TestRoutesAreTheHandlersWithIAMAuth(t *testing.T) {
	s := defaultStack(t)
	got := map[string]string{}
	for _, r := range s.resources("AWS::ApiGatewayV2::Route") {
		p := r["Properties"].(map[string]any)
		got[p["RouteKey"].(string)] = p["AuthorizationType"].(string)
	}
	want := map[string]string{}
	for _, r := range httpapi.Routes() {
		want[r.String()] = "AWS_IAM"
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes:\n got %v\nwant %v", got, want)
	}
	if n := len(s.resources("AWS::ApiGatewayV2::Authorizer")); n != 0 {
		t.Errorf("%d authorizer resources with IAM auth", n)
	}
	// One integration, the api function, payload 2.0.
	ints := s.resources("AWS::ApiGatewayV2::Integration")
	if len(ints) != 1 {
		t.Fatalf("%d integrations", len(ints))
	}
	for _, i := range ints {
		p := i["Properties"].(map[string]any)
		if p["PayloadFormatVersion"] != "2.0" || p["IntegrationType"] != "AWS_PROXY" {
			t.Errorf("integration %v", p)
		}
		uri, _ := json.Marshal(p["IntegrationUri"])
		if !strings.Contains(string(uri), s.id(s.K.Functions[FnAPI])) {
			t.Errorf("integration targets %s, not the api function", uri)
		}
	}
}

func TestJWTAuthorizerWhenConfigured(t *testing.T) {
	s, err := synthWith(t, map[string]any{
		"jwtIssuer":         "https://login.example.com/",
		"jwtAudience":       "keyvend,keyvend-portal",
		"jwtPrincipalClaim": "email",
		"jwtGroupsClaim":    "roles",
		"corsOrigins":       "https://portal.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	auths := s.resources("AWS::ApiGatewayV2::Authorizer")
	if len(auths) != 1 {
		t.Fatalf("%d authorizers, want 1", len(auths))
	}
	var authID string
	for id, a := range auths {
		authID = id
		p := a["Properties"].(map[string]any)
		want := map[string]any{"Issuer": "https://login.example.com/", "Audience": []any{"keyvend", "keyvend-portal"}}
		if p["AuthorizerType"] != "JWT" || !reflect.DeepEqual(p["JwtConfiguration"], want) {
			t.Errorf("authorizer %v", p)
		}
	}
	routes := s.resources("AWS::ApiGatewayV2::Route")
	if len(routes) != len(httpapi.Routes()) {
		t.Errorf("%d routes", len(routes))
	}
	for _, r := range routes {
		p := r["Properties"].(map[string]any)
		if p["AuthorizationType"] != "JWT" || !reflect.DeepEqual(p["AuthorizerId"], map[string]any{"Ref": authID}) {
			t.Errorf("route %s: %v %v", p["RouteKey"], p["AuthorizationType"], p["AuthorizerId"])
		}
	}
	env := s.props(s.id(s.K.Functions[FnAPI]))["Environment"].(map[string]any)["Variables"].(map[string]any)
	for k, v := range map[string]string{"KEYVEND_JWT_PRINCIPAL_CLAIM": "email", "KEYVEND_JWT_GROUPS_CLAIM": "roles", "KEYVEND_CORS_ORIGINS": "https://portal.example.com"} {
		if env[k] != v {
			t.Errorf("api env %s = %v, want %s", k, env[k], v)
		}
	}
	// CORS preflights are answered by API Gateway: no unauthenticated route.
	for _, a := range s.resources("AWS::ApiGatewayV2::Api") {
		cors := a["Properties"].(map[string]any)["CorsConfiguration"].(map[string]any)
		if !reflect.DeepEqual(cors["AllowOrigins"], []any{"https://portal.example.com"}) {
			t.Errorf("CORS %v", cors)
		}
		// The handler's idempotency headers (pkg/httpapi/cors.go): a
		// browser may send a key and read whether the answer is a replay.
		if allow, expose := asStrings(cors["AllowHeaders"]), asStrings(cors["ExposeHeaders"]); !slices.Contains(allow, "Idempotency-Key") || !slices.Contains(allow, "If-Match") ||
			!slices.Contains(expose, "Idempotency-Replayed") || !slices.Contains(expose, "ETag") || !slices.Contains(expose, "Allow") {
			t.Errorf("CORS headers %v / %v, want Idempotency-Key and If-Match allowed, Idempotency-Replayed, ETag and Allow (of a 405) exposed", cors["AllowHeaders"], cors["ExposeHeaders"])
		}
	}
	noPanic(t, "nag", func() {
		assertions.Annotations_FromStack(s.K.Stack).HasNoError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))
	})
}

func TestConfigProblemsFailSynth(t *testing.T) {
	for name, ctx := range map[string]map[string]any{
		"issuer without audience": {"jwtIssuer": "https://login.example.com/"},
		"bad retention":           {"logRetentionDays": 42},
		"bad duration":            {"readyTimeout": "soon"},
		"bad user path":           {"userPath": "keyvend"},
		"bad recovery window":     {"secretRecoveryDays": 3},
		"unknown grant mode":      {"grantMode": "groups"},
		"reader not an ARN":       {"secretReaders": "deployer"},
		"reader a wildcard":       {"secretReaders": "arn:aws:iam::111122223333:role/*"},
		"reader a group":          {"secretReaders": "arn:aws:iam::111122223333:group/readers"},
		"reader short account":    {"secretReaders": "arn:aws:iam::1111:role/r"},
		"empty grant mode":        {"grantMode": ""},
	} {
		if _, err := synthWith(t, ctx); err == nil {
			t.Errorf("%s: synth succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestFunctions(t *testing.T) {
	s := defaultStack(t)
	boundaryID := s.id(s.K.Boundary)
	keyID := s.id(s.K.Stack.Node().FindChild(jsii.String("SecretsKey")))
	tableID, _ := stateTable(t, s)
	wantTimeout := map[string]float64{FnAPI: 28, FnReaper: 300, FnRotate: 60}
	if len(s.resources("AWS::Lambda::Function")) != len(Functions) {
		t.Errorf("%d functions", len(s.resources("AWS::Lambda::Function")))
	}
	for _, fn := range Functions {
		p := s.props(s.id(s.K.Functions[fn]))
		if p["Runtime"] != "provided.al2023" || !reflect.DeepEqual(p["Architectures"], []any{"arm64"}) || p["Handler"] != "bootstrap" {
			t.Errorf("%s: runtime %v architectures %v handler %v", fn, p["Runtime"], p["Architectures"], p["Handler"])
		}
		if !reflect.DeepEqual(p["TracingConfig"], map[string]any{"Mode": "Active"}) {
			t.Errorf("%s: tracing %v, want active X-Ray tracing", fn, p["TracingConfig"])
		}
		if p["MemorySize"] != float64(256) || p["Timeout"] != wantTimeout[fn] {
			t.Errorf("%s: memory %v timeout %v", fn, p["MemorySize"], p["Timeout"])
		}
		// One reaper at a time: a retried or late run never sweeps
		// alongside another.
		if rc := p["ReservedConcurrentExecutions"]; (fn == FnReaper) != (rc == float64(1)) {
			t.Errorf("%s: reserved concurrency %v (want 1 for the reaper only)", fn, rc)
		}
		if p["Timeout"].(float64) > 28 && fn == FnAPI {
			t.Errorf("api timeout %v exceeds what API Gateway waits", p["Timeout"])
		}
		lc := p["LoggingConfig"].(map[string]any)
		logGroup := lc["LogGroup"].(map[string]any)["Ref"].(string)
		if lc["LogFormat"] != "JSON" || s.props(logGroup)["RetentionInDays"] != float64(90) {
			t.Errorf("%s: logging %v, retention %v", fn, lc, s.props(logGroup)["RetentionInDays"])
		}
		env := p["Environment"].(map[string]any)["Variables"].(map[string]any)
		want := map[string]any{
			"KEYVEND_BOUNDARY_ARN":         map[string]any{"Ref": boundaryID},
			"KEYVEND_SECRET_PREFIX":        "keyvend/users/",
			"KEYVEND_USER_PATH":            "/keyvend/",
			"KEYVEND_KMS_KEY_ID":           map[string]any{"Fn::GetAtt": []any{keyID, "Arn"}},
			"KEYVEND_REPAIR_AFTER":         "1m",
			"KEYVEND_READY_TIMEOUT":        "10s",
			"KEYVEND_SECRET_RECOVERY_DAYS": "7",
			"KEYVEND_TABLE":                map[string]any{"Ref": tableID},
		}
		switch fn {
		case FnAPI:
			want["KEYVEND_RULES"] = RulesPathInLambda
			want["KEYVEND_GRANT_MODE"] = "policy"
			want["KEYVEND_ROTATION_FUNCTION_ARN"] = map[string]any{"Fn::GetAtt": []any{s.id(s.K.Functions[FnRotate]), "Arn"}}
		case FnReaper:
			want["KEYVEND_GRANT_MODE"] = "policy"
		case FnRotate:
			// It verifies a secret is keyvend's before rotating it.
			want = map[string]any{
				"KEYVEND_READY_TIMEOUT": "10s",
				"KEYVEND_SECRET_PREFIX": "keyvend/users/",
				"KEYVEND_KMS_KEY_ID":    map[string]any{"Fn::GetAtt": []any{keyID, "Arn"}},
				"KEYVEND_USER_PATH":     "/keyvend/",
				"KEYVEND_BOUNDARY_ARN":  map[string]any{"Ref": boundaryID},
				"KEYVEND_TABLE":         map[string]any{"Ref": tableID},
			}
		}
		if !reflect.DeepEqual(env, want) {
			t.Errorf("%s environment:\n got %v\nwant %v", fn, env, want)
		}
	}
}

// TestGrantModeReachesTheFunctions: the functions that write or read
// grants get KEYVEND_GRANT_MODE, in each mode; the rotation function,
// which touches keys only, does not.
func TestGrantModeReachesTheFunctions(t *testing.T) {
	for mode, s := range modeStacks(t) {
		for _, fn := range AllFunctions {
			env := s.props(s.id(s.K.Functions[fn]))["Environment"].(map[string]any)["Variables"].(map[string]any)
			want := any(mode)
			if fn == FnRotate {
				want = nil
			}
			if env["KEYVEND_GRANT_MODE"] != want {
				t.Errorf("%s mode: %s KEYVEND_GRANT_MODE = %v, want %v", mode, fn, env["KEYVEND_GRANT_MODE"], want)
			}
		}
	}
}

func TestAPIAssetBundlesTheRulesFile(t *testing.T) {
	s := defaultStack(t)
	root, _ := RepoRoot()
	want, err := os.ReadFile(filepath.Join(root, "rules", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.DistDir, ".bundle", FnAPI)
	got, err := os.ReadFile(filepath.Join(dir, "rules.json"))
	if err != nil || string(got) != string(want) {
		t.Errorf("bundled rules.json: %v, equal=%v", err, string(got) == string(want))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bootstrap")); err != nil || !strings.Contains(string(b), "fake api") {
		t.Errorf("bundled bootstrap: %v", err)
	}
	if filepath.Base(RulesPathInLambda) != "rules.json" || filepath.Dir(RulesPathInLambda) != "/var/task" {
		t.Errorf("rules path %s is not next to the bootstrap in /var/task", RulesPathInLambda)
	}
}

func TestBadRulesFileFailsSynthWithTheServersMessage(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"bad-pattern.json":   `{"rules":[{"principals":["arn:aws:iam::1:user/a"],"buckets":["Bad_Bucket"],"access":["read-only"]}]}`,
		"unknown-field.json": `{"rules":[{"principals":["p"],"buckets":["b"],"access":["read-only"],"extra":1}]}`,
		"bad-access.json":    `{"rules":[{"principals":["p"],"buckets":["b"],"access":["admin"]}]}`,
		"trailing.json":      `{"rules":[]}}`,
		"missing.json":       "",
	} {
		path := filepath.Join(dir, name)
		if name != "missing.json" {
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, want := authz.Load(path)
		if want == nil {
			t.Fatalf("%s: authz.Load accepted it", name)
		}
		_, err := synthWith(t, map[string]any{"rulesFile": path})
		if err == nil || err.Error() != want.Error() {
			t.Errorf("%s: synth error\n got %v\nwant %v", name, err, want)
		}
	}
}

func TestMissingBuildFailsSynth(t *testing.T) {
	dir := t.TempDir()
	if err := fakeDist(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, FnReaper, "bootstrap")); err != nil {
		t.Fatal(err)
	}
	_, err := synthIn(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing bootstrap: %v", err)
	}
}

func TestKeysRotate(t *testing.T) {
	s := defaultStack(t)
	keys := s.resources("AWS::KMS::Key")
	if len(keys) != 3 { // secrets, state table, alarm topic
		t.Fatalf("%d keys", len(keys))
	}
	for id, k := range keys {
		if k["Properties"].(map[string]any)["EnableKeyRotation"] != true {
			t.Errorf("key %s does not rotate", id)
		}
	}
	secretsKey := s.id(s.K.Stack.Node().FindChild(jsii.String("SecretsKey")))
	if keys[secretsKey]["DeletionPolicy"] != "Retain" {
		t.Errorf("secrets key deletion policy %v: secrets outlive the stack", keys[secretsKey]["DeletionPolicy"])
	}
}

func TestRotationInvokePermission(t *testing.T) {
	s := defaultStack(t)
	rotate := s.id(s.K.Functions[FnRotate])
	found := false
	for _, p := range s.resources("AWS::Lambda::Permission") {
		props := p["Properties"].(map[string]any)
		if props["Principal"] != "secretsmanager.amazonaws.com" {
			continue
		}
		found = true
		if !reflect.DeepEqual(props["FunctionName"], map[string]any{"Fn::GetAtt": []any{rotate, "Arn"}}) ||
			!reflect.DeepEqual(props["SourceAccount"], map[string]any{"Ref": "AWS::AccountId"}) ||
			!strings.Contains(mustJSON(props["SourceArn"]), ":secret:keyvend/users/*") {
			t.Errorf("secretsmanager permission %v", props)
		}
	}
	if !found {
		t.Error("no permission for secretsmanager.amazonaws.com to invoke the rotation function")
	}
}

func TestReaperRunsHourly(t *testing.T) {
	s := defaultStack(t)
	rules := s.resources("AWS::Events::Rule")
	if len(rules) != 1 {
		t.Fatalf("%d rules", len(rules))
	}
	for _, r := range rules {
		p := r["Properties"].(map[string]any)
		targets := p["Targets"].([]any)
		if p["ScheduleExpression"] != "rate(1 hour)" || len(targets) != 1 ||
			!reflect.DeepEqual(targets[0].(map[string]any)["Arn"], map[string]any{"Fn::GetAtt": []any{s.id(s.K.Functions[FnReaper]), "Arn"}}) {
			t.Errorf("schedule %v", p)
		}
	}
}

func TestStageThrottlingAndAccessLogs(t *testing.T) {
	s := defaultStack(t)
	stages := s.resources("AWS::ApiGatewayV2::Stage")
	if len(stages) != 1 {
		t.Fatalf("%d stages", len(stages))
	}
	for _, st := range stages {
		p := st["Properties"].(map[string]any)
		if p["StageName"] != "$default" || p["AutoDeploy"] != true {
			t.Errorf("stage %v", p)
		}
		rs := p["DefaultRouteSettings"].(map[string]any)
		if rs["ThrottlingRateLimit"] != float64(10) || rs["ThrottlingBurstLimit"] != float64(20) {
			t.Errorf("throttling %v", rs)
		}
		al := p["AccessLogSettings"].(map[string]any)
		dest := al["DestinationArn"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
		if s.props(dest)["RetentionInDays"] != float64(90) || !strings.Contains(al["Format"].(string), "$context.requestId") ||
			!strings.Contains(al["Format"].(string), "$context.identity.userArn") {
			t.Errorf("access logs %v to %s", al, dest)
		}
	}
	noPanic(t, "no default stage", func() {
		s.Template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Api"), map[string]any{"ProtocolType": "HTTP"})
	})
}

func TestAlarms(t *testing.T) {
	s := defaultStack(t)
	topics := s.resources("AWS::SNS::Topic")
	if len(topics) != 1 {
		t.Fatalf("%d topics", len(topics))
	}
	var topicID string
	for id, tp := range topics {
		topicID = id
		if _, ok := tp["Properties"].(map[string]any)["KmsMasterKeyId"]; !ok {
			t.Error("alarm topic is not encrypted")
		}
	}
	got := []string{}
	for _, a := range s.resources("AWS::CloudWatch::Alarm") {
		p := a["Properties"].(map[string]any)
		if !reflect.DeepEqual(p["AlarmActions"], []any{map[string]any{"Ref": topicID}}) {
			t.Errorf("alarm %v does not notify the topic", p["AlarmDescription"])
		}
		got = append(got, alarmSignature(p))
	}
	sort.Strings(got)
	want := []string{}
	for _, fn := range Functions {
		id := s.id(s.K.Functions[fn])
		want = append(want,
			`AWS/Lambda/Errors [{"Name":"FunctionName","Value":{"Ref":"`+id+`"}}]`,
			`AWS/Lambda/Throttles [{"Name":"FunctionName","Value":{"Ref":"`+id+`"}}]`)
	}
	want = append(want, `AWS/ApiGateway/5xx [{"Name":"ApiId","Value":{"Ref":"`+s.id(s.K.API)+`"}}]`,
		`AWS/Lambda/Invocations [{"Name":"FunctionName","Value":{"Ref":"`+s.id(s.K.Functions[FnReaper])+`"}}]`,
		stateThrottlesSignature)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("alarms:\n got %v\nwant %v", got, want)
	}
	if len(s.resources("AWS::SNS::Subscription")) != 0 {
		t.Error("a subscription without alarmEmail")
	}
}

// alarmSignature names what an alarm watches: namespace/metric and
// dimensions, or "math " and the expression of a metric-math alarm (the
// state table's throttling; TestStateTableThrottleAlarm checks its
// metrics).
func alarmSignature(p map[string]any) string {
	if ns, ok := p["Namespace"].(string); ok {
		return ns + "/" + p["MetricName"].(string) + " " + mustJSON(p["Dimensions"])
	}
	for _, m := range p["Metrics"].([]any) {
		if e, ok := m.(map[string]any)["Expression"].(string); ok {
			return "math " + e
		}
	}
	return "no metric: " + mustJSON(p)
}

// stateThrottlesSignature is the state table's throttling alarm.
const stateThrottlesSignature = "math FILL(getitem,0)+FILL(putitem,0)+FILL(updateitem,0)+FILL(deleteitem,0)+FILL(query,0)+FILL(transactwriteitems,0)"

func TestAlarmEmailSubscription(t *testing.T) {
	s, err := synthWith(t, map[string]any{"alarmEmail": "ops@example.com", "logRetentionDays": "30"})
	if err != nil {
		t.Fatal(err)
	}
	subs := s.resources("AWS::SNS::Subscription")
	if len(subs) != 1 {
		t.Fatalf("%d subscriptions", len(subs))
	}
	for _, sub := range subs {
		p := sub["Properties"].(map[string]any)
		if p["Protocol"] != "email" || p["Endpoint"] != "ops@example.com" {
			t.Errorf("subscription %v", p)
		}
	}
	for id, lg := range s.resources("AWS::Logs::LogGroup") {
		if lg["Properties"].(map[string]any)["RetentionInDays"] != float64(30) {
			t.Errorf("log group %s retention %v", id, lg["Properties"])
		}
	}
}

// TestNoUnsuppressedNagFindings: cdk-nag AwsSolutions reports nothing that
// is not suppressed, and every suppression carries a keyvend reason.
func TestNoUnsuppressedNagFindings(t *testing.T) {
	s := defaultStack(t)
	ann := assertions.Annotations_FromStack(s.K.Stack)
	match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
	for _, m := range *ann.FindError(jsii.String("*"), match) {
		t.Errorf("cdk-nag error at %s: %v", *m.Id, m.Entry.Data)
	}
	for _, m := range *ann.FindWarning(jsii.String("*"), match) {
		t.Errorf("cdk-nag warning at %s: %v", *m.Id, m.Entry.Data)
	}
	for _, sup := range NagSuppressions(s.K, mustConfig(t, s)) {
		if len(sup.Reason) < 80 || !strings.Contains(sup.Reason, "keyvend") && !strings.Contains(sup.Reason, "rules") {
			t.Errorf("suppression %s on %s: reason too thin: %q", sup.Rule, sup.Construct, sup.Reason)
		}
		t.Logf("%s on %s for %v: %s", sup.Rule, sup.Construct, sup.AppliesTo, sup.Reason)
	}
}

func mustConfig(t *testing.T, s *synthesized) Config {
	t.Helper()
	cfg, err := ConfigFromContext(s.K.Stack.Node())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAlarmsKeyOnlyForThisAccountsAlarms: CloudWatch may use the alarm
// topic's key only for alarms of this account (aws:SourceAccount) and only
// from an alarm (aws:SourceArn), not on behalf of any CloudWatch alarm
// anywhere (the confused-deputy guard).
func TestAlarmsKeyOnlyForThisAccountsAlarms(t *testing.T) {
	s := defaultStack(t)
	id := s.id(s.K.Stack.Node().FindChild(jsii.String("AlarmsKey")))
	found := 0
	for _, st := range s.props(id)["KeyPolicy"].(map[string]any)["Statement"].([]any) {
		m := st.(map[string]any)
		if mustJSON(m["Principal"]) != `{"Service":"cloudwatch.amazonaws.com"}` {
			continue
		}
		found++
		want := map[string]any{
			"StringEquals": map[string]any{"aws:SourceAccount": map[string]any{"Ref": "AWS::AccountId"}},
			"ArnLike": map[string]any{"aws:SourceArn": map[string]any{"Fn::Join": []any{"", []any{
				"arn:", map[string]any{"Ref": "AWS::Partition"}, ":cloudwatch:", map[string]any{"Ref": "AWS::Region"}, ":",
				map[string]any{"Ref": "AWS::AccountId"}, ":alarm:*"}}}},
		}
		if !reflect.DeepEqual(m["Condition"], want) {
			t.Errorf("CloudWatch's grant on the alarms key: condition %s, want %s", mustJSON(m["Condition"]), mustJSON(want))
		}
	}
	if found != 1 {
		t.Errorf("%d key policy statements for CloudWatch, want 1", found)
	}
}

// TestReaperNotRunAlarm: the reaper runs hourly; two hours in a row
// without an invocation (or without the metric at all: a deleted schedule
// reports nothing) raise an alarm.
func TestReaperNotRunAlarm(t *testing.T) {
	s := defaultStack(t)
	reaper := `[{"Name":"FunctionName","Value":{"Ref":"` + s.id(s.K.Functions[FnReaper]) + `"}}]`
	found := 0
	for _, a := range s.resources("AWS::CloudWatch::Alarm") {
		p := a["Properties"].(map[string]any)
		if p["MetricName"] != "Invocations" || mustJSON(p["Dimensions"]) != reaper {
			continue
		}
		found++
		want := map[string]any{"Namespace": "AWS/Lambda", "Statistic": "Sum", "Period": float64(3600), "EvaluationPeriods": float64(2),
			"DatapointsToAlarm": float64(2), "Threshold": float64(1), "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching"}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("reaper not-run alarm %s = %v, want %v", k, p[k], v)
			}
		}
		if len(p["AlarmActions"].([]any)) != 1 {
			t.Errorf("reaper not-run alarm actions %v", p["AlarmActions"])
		}
	}
	if found != 1 {
		t.Errorf("%d alarms on the reaper's invocations, want 1", found)
	}
}

// alarmListStateTable is how the no-alarmEmail warnings (the synth's and
// make deploy-check's) name the state table's throttle alarm.
const alarmListStateTable = "throttled state-table requests"

// noSubscriberWarnings are the stack's warning annotations about the
// alarms reaching nobody.
func noSubscriberWarnings(s *synthesized) int {
	ann := assertions.Annotations_FromStack(s.K.Stack)
	return len(*ann.FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String(".*alarmEmail.*"))))
}

// TestNoAlarmSubscriberWarns: without alarmEmail the alarms reach nobody,
// so synth and deploy say so (a CDK warning annotation); with it, no
// warning.
func TestNoAlarmSubscriberWarns(t *testing.T) {
	if n := noSubscriberWarnings(defaultStack(t)); n != 1 {
		t.Errorf("%d warnings about alarmEmail without one, want 1", n)
	}
	// The warning lists the alarms that would notify nobody, the state
	// table's throttle alarm among them.
	ann := assertions.Annotations_FromStack(defaultStack(t).K.Stack)
	if n := len(*ann.FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String(".*alarmEmail.*"+alarmListStateTable+".*")))); n != 1 {
		t.Errorf("the alarmEmail warning does not name the state table's throttle alarm (%q)", alarmListStateTable)
	}
	s, err := synthWith(t, map[string]any{"alarmEmail": "ops@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if n := noSubscriberWarnings(s); n != 0 {
		t.Errorf("%d warnings about alarmEmail with one", n)
	}
}

// TestMakeDeployWarnsFirstWithoutAlarmSubscriber: `make deploy` prints a
// WARNING line before anything else when neither cdk.json nor CDK_ARGS
// sets alarmEmail, and none when CDK_ARGS does.
func TestMakeDeployWarnsFirstWithoutAlarmSubscriber(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := cdkJSONContext(root)
	if err != nil {
		t.Fatal(err)
	}
	if ctx["alarmEmail"] != "" {
		t.Skipf("cdk.json sets alarmEmail=%v", ctx["alarmEmail"])
	}
	makeOut := func(args ...string) string {
		cmd := exec.Command("make", append([]string{"-s", "--no-print-directory", "-C", root}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	for args, warn := range map[string]bool{
		"":                                       true,
		"CDK_ARGS=-c alarmEmail=ops@example.com": false,
		"CDK_ARGS=--context alarmEmail=ops@example.com --require-approval never": false,
		"CDK_ARGS=-c alarmEmail=":     true,
		"CDK_ARGS=-c stackName=other": true,
	} {
		a := []string{"deploy-check"}
		if args != "" {
			a = append(a, args)
		}
		out := makeOut(a...)
		if strings.HasPrefix(out, "WARNING") != warn {
			t.Errorf("make deploy-check %s: %q, want a WARNING line: %v", args, out, warn)
		}
		if warn && !strings.Contains(out, alarmListStateTable) {
			t.Errorf("make deploy-check %s: %q does not name the state table's throttle alarm (%q)", args, out, alarmListStateTable)
		}
	}
	// deploy runs the check before anything else (make -n lists the
	// recipes in the order they would run).
	plan := makeOut("-n", "deploy")
	check, build := strings.Index(plan, "WARNING"), strings.Index(plan, "go build")
	if check < 0 || build < 0 || check > build {
		t.Errorf("make -n deploy does not run the alarm check first:\n%s", plan)
	}
}

// asStrings is a synthesized list of strings.
func asStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// TestRotationFunctionARNReachesTheSchedulers: the api and the worker
// (which create secrets and change grants) know the rotation function's
// ARN, to schedule rotation as the rules' rotate_every asks; the others
// do not need it.
func TestRotationFunctionARNReachesTheSchedulers(t *testing.T) {
	s := slackStack(t)
	want := map[string]any{"Fn::GetAtt": []any{s.id(s.K.Functions[FnRotate]), "Arn"}}
	for _, fn := range AllFunctions {
		env, _ := s.props(s.id(s.K.Functions[fn]))["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		got, ok := vars["KEYVEND_ROTATION_FUNCTION_ARN"]
		switch fn {
		case FnAPI, FnWorker:
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: KEYVEND_ROTATION_FUNCTION_ARN = %v, want %v", fn, got, want)
			}
		default:
			if ok {
				t.Errorf("%s has KEYVEND_ROTATION_FUNCTION_ARN", fn)
			}
		}
	}
}
