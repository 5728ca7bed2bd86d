package chatops

// What the tests (package chatops_test) use of the package's unexported
// names.
var (
	SlackPrincipal   = slackPrincipal
	EncodeJob        = encodeJob
	DecodeJob        = decodeJob
	JobFingerprint   = jobFingerprint
	AckMessage       = ackMessage
	RefusalMessage   = refusalMessage
	ProvisionMessage = provisionMessage
	RotateMessage    = rotateMessage
	DeleteMessage    = deleteMessage
)
