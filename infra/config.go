package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
)

// ContextDefaults are the CDK context keys the app reads, with their
// defaults. cdk.json repeats them (a test keeps the two equal); override one
// with `cdk synth -c key=value` or in cdk.json. Paths are relative to the
// repository root (the directory that holds cdk.json).
var ContextDefaults = map[string]any{
	"stackName":          "keyvend",
	"rulesFile":          "rules/demo.json",
	"distDir":            "dist",
	"userPath":           "/keyvend/",
	"secretPrefix":       "keyvend/users/",
	"secretRecoveryDays": 7,
	"repairAfter":        "1m",
	"readyTimeout":       "10s",
	"corsOrigins":        "",
	"jwtIssuer":          "",
	"jwtAudience":        "",
	"jwtPrincipalClaim":  "",
	"jwtGroupsClaim":     "",
	"throttleRateLimit":  10,
	"throttleBurstLimit": 20,
	"logRetentionDays":   90,
	"alarmEmail":         "",
	// How a vended user's grants are written: "policy" (one inline policy
	// on the user) or "group" (one IAM group per grant). See permissions.go.
	"grantMode": GrantModePolicy,
	// IAM principals (users, roles or account roots; comma-separated ARNs)
	// the secrets key lets decrypt the vended users' secrets, through
	// Secrets Manager and only for secrets under secretPrefix. Each still
	// needs secretsmanager:GetSecretValue on its secret from its own IAM
	// policy (docs/deploy.md). Empty: only keyvend's functions.
	"secretReaders": "",
	// The Slack command: the ARN of the Secrets Manager secret that holds
	// the Slack app's signing secret. Empty: no Slack parts are deployed.
	"slackSigningSecretArn": "",
	// The throttle of the Slack command's route, which has no authorizer:
	// Slack sends one request per command a person types, a few a minute;
	// 5 per second with bursts of 10 is plenty and keeps a flood of
	// unsigned requests from spending the stage's budget.
	"slackThrottleRateLimit":  5,
	"slackThrottleBurstLimit": 10,
}

// Config is the app's configuration, read from the CDK context.
type Config struct {
	StackName          string
	RepoRoot           string // absolute; relative paths below are resolved against it
	RulesFile          string // absolute path of the rules file
	DistDir            string // absolute path of the Lambda builds (dist/<fn>/bootstrap)
	UserPath           string
	SecretPrefix       string
	SecretRecoveryDays int
	RepairAfter        string
	ReadyTimeout       string
	CORSOrigins        []string
	JWTIssuer          string
	JWTAudience        []string
	JWTPrincipalClaim  string
	JWTGroupsClaim     string
	ThrottleRate       float64
	ThrottleBurst      float64
	LogRetentionDays   int
	AlarmEmail         string
	GrantMode          string // GrantModePolicy or GrantModeGroup
	// SecretReaders are IAM principal ARNs the secrets key policy lets
	// decrypt user secrets through Secrets Manager.
	SecretReaders []string
	// SlackSigningSecretARN enables the Slack command (pkg/chatops): its
	// functions, queues, route and alarms. Empty: none of them.
	SlackSigningSecretARN string
	// SlackThrottleRate and SlackThrottleBurst throttle the Slack route.
	SlackThrottleRate  float64
	SlackThrottleBurst float64
}

// Slack reports whether the Slack command is deployed.
func (c Config) Slack() bool { return c.SlackSigningSecretARN != "" }

// DeployedFunctions lists the functions of the stack, in a stable order.
func (c Config) DeployedFunctions() []string {
	if c.Slack() {
		return AllFunctions
	}
	return Functions
}

// secretARNRE is a complete Secrets Manager secret ARN: IAM policies name
// secrets by their full ARN, with the 6-character suffix Secrets Manager
// appends to the name.
var secretARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:([A-Za-z0-9/_+=.@-]+)-[A-Za-z0-9]{6}$`)

// principalARNRE is an IAM principal a key policy can name: a user, a role
// (with its path) or an account root.
var principalARNRE = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(root|(user|role)(/[\x21-\x7e]*)?/[A-Za-z0-9+=,.@_-]{1,64})$`)

// JWT reports whether the API uses the JWT authorizer instead of IAM.
func (c Config) JWT() bool { return c.JWTIssuer != "" }

// ConfigFromContext reads the configuration from node's context, with
// ContextDefaults for missing keys. Values given on the command line
// (-c key=value) arrive as strings, so numbers are accepted in both forms.
func ConfigFromContext(node constructs.Node) (Config, error) {
	get := func(key string) any {
		if v := node.TryGetContext(&key); v != nil {
			return v
		}
		return ContextDefaults[key]
	}
	var problems []string
	str := func(key string) string {
		switch v := get(key).(type) {
		case string:
			return strings.TrimSpace(v)
		default:
			problems = append(problems, fmt.Sprintf("context %s: want a string, got %v", key, v))
			return ""
		}
	}
	num := func(key string) float64 {
		switch v := get(key).(type) {
		case float64:
			return v
		case int:
			return float64(v)
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
		problems = append(problems, fmt.Sprintf("context %s: want a number, got %v", key, get(key)))
		return 0
	}
	list := func(key string) []string {
		var items []string
		switch v := get(key).(type) {
		case string:
			items = strings.Split(v, ",")
		case []any:
			for _, e := range v {
				items = append(items, fmt.Sprint(e))
			}
		default:
			problems = append(problems, fmt.Sprintf("context %s: want a comma-separated string or a list, got %v", key, v))
		}
		var out []string
		for _, s := range items {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}

	root, err := RepoRoot()
	if err != nil {
		return Config{}, err
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	c := Config{
		StackName:          str("stackName"),
		RepoRoot:           root,
		RulesFile:          abs(str("rulesFile")),
		DistDir:            abs(str("distDir")),
		UserPath:           str("userPath"),
		SecretPrefix:       str("secretPrefix"),
		SecretRecoveryDays: int(num("secretRecoveryDays")),
		RepairAfter:        str("repairAfter"),
		ReadyTimeout:       str("readyTimeout"),
		CORSOrigins:        list("corsOrigins"),
		JWTIssuer:          str("jwtIssuer"),
		JWTAudience:        list("jwtAudience"),
		JWTPrincipalClaim:  str("jwtPrincipalClaim"),
		JWTGroupsClaim:     str("jwtGroupsClaim"),
		ThrottleRate:       num("throttleRateLimit"),
		ThrottleBurst:      num("throttleBurstLimit"),
		LogRetentionDays:   int(num("logRetentionDays")),
		AlarmEmail:         str("alarmEmail"),
		GrantMode:          str("grantMode"),
		SecretReaders:      list("secretReaders"),
	}
	c.SlackSigningSecretARN = str("slackSigningSecretArn")
	c.SlackThrottleRate, c.SlackThrottleBurst = num("slackThrottleRateLimit"), num("slackThrottleBurstLimit")
	if c.StackName == "" {
		problems = append(problems, "context stackName: empty")
	}
	if c.RulesFile == "" {
		problems = append(problems, "context rulesFile: empty; a deployment without rules denies every request, give a rules file that says so ({\"rules\": []})")
	}
	for _, key := range []string{"repairAfter", "readyTimeout"} {
		v := str(key)
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("context %s=%q: want a positive Go duration such as 10s", key, v))
		}
	}
	if (c.JWTIssuer == "") != (len(c.JWTAudience) == 0) {
		problems = append(problems, "context jwtIssuer and jwtAudience: give both (JWT authorizer) or neither (IAM authorizer)")
	}
	if c.JWTIssuer != "" && !strings.HasPrefix(c.JWTIssuer, "https://") {
		problems = append(problems, fmt.Sprintf("context jwtIssuer %q: want an https:// issuer URL", c.JWTIssuer))
	}
	if c.JWTIssuer == "" && (c.JWTPrincipalClaim != "" || c.JWTGroupsClaim != "") {
		problems = append(problems, "context jwtPrincipalClaim/jwtGroupsClaim: only meaningful with jwtIssuer")
	}
	if c.SlackThrottleRate <= 0 || c.SlackThrottleBurst < 1 {
		problems = append(problems, fmt.Sprintf("context slackThrottleRateLimit=%v slackThrottleBurstLimit=%v: want a positive rate and a burst of at least 1", c.SlackThrottleRate, c.SlackThrottleBurst))
	}
	if c.ThrottleRate <= 0 || c.ThrottleBurst < 1 {
		problems = append(problems, fmt.Sprintf("context throttleRateLimit=%v throttleBurstLimit=%v: want a positive rate and a burst of at least 1", c.ThrottleRate, c.ThrottleBurst))
	}
	if _, ok := retentions[c.LogRetentionDays]; !ok {
		problems = append(problems, fmt.Sprintf("context logRetentionDays=%d: CloudWatch Logs allows %s", c.LogRetentionDays, retentionList()))
	}
	for _, o := range c.CORSOrigins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://localhost") {
			problems = append(problems, fmt.Sprintf("context corsOrigins: %q is not an https:// origin", o))
		}
	}
	if !slices.Contains(GrantModes, c.GrantMode) {
		problems = append(problems, fmt.Sprintf("context grantMode=%q: want %s", c.GrantMode, strings.Join(GrantModes, " or ")))
	}
	for _, r := range c.SecretReaders {
		if !principalARNRE.MatchString(r) || strings.ContainsAny(r, "*?") {
			problems = append(problems, fmt.Sprintf("context secretReaders: %q is not the ARN of an IAM user, role or account root (arn:aws:iam::123456789012:role/name; no wildcards, no groups: a key policy names principals that exist)", r))
		}
	}
	if c.Slack() {
		m := secretARNRE.FindStringSubmatch(c.SlackSigningSecretARN)
		switch {
		case m == nil:
			problems = append(problems, fmt.Sprintf("context slackSigningSecretArn %q: want the full ARN of a Secrets Manager secret, with its 6-character suffix (aws secretsmanager describe-secret --query ARN)", c.SlackSigningSecretARN))
		case c.SecretPrefix != "" && strings.HasPrefix(m[1], c.SecretPrefix):
			problems = append(problems, fmt.Sprintf("context slackSigningSecretArn: the secret %s is under the vended users' prefix %s; keep the signing secret elsewhere", m[1], c.SecretPrefix))
		}
	}
	if len(problems) > 0 {
		return c, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

// retentions are the retention periods CloudWatch Logs accepts.
var retentions = map[int]awslogs.RetentionDays{
	1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
	60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
	150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
	400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
	1096: awslogs.RetentionDays_THREE_YEARS, 1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS,
	2557: awslogs.RetentionDays_SEVEN_YEARS, 2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS,
	3653: awslogs.RetentionDays_TEN_YEARS,
}

func retentionList() string {
	var days []int
	for d := range retentions {
		days = append(days, d)
	}
	sort.Ints(days)
	s := make([]string, len(days))
	for i, d := range days {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, ", ") + " days"
}

// RepoRoot is the directory holding cdk.json: the working directory or the
// nearest parent with one. `cdk synth` runs the app in infra/ (cdk.json's
// "app" is `cd infra && go run .`) and `go test` runs in infra/ too.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cdk.json")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no cdk.json in %s or any parent: run the app from the keyvend repository", dir)
		}
	}
}
