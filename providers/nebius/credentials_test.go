package nebius

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/providers/nebius/nebiusfake"
)

func newWithCreds(t *testing.T, srv *nebiusfake.Server, credsFile string) (*Provider, error) {
	t.Helper()
	p, err := New(provider.Config{Deployment: "dep", Options: testOptions(srv, map[string]string{"retries": "0"}), CredentialsFile: credsFile})
	if err == nil {
		t.Cleanup(func() { p.Close() })
	}
	return p, err
}

func TestCredentialsFileProblems(t *testing.T) {
	srv := startFake(t, fastFake())
	loose := writeSecret(t, nebiusfake.DefaultToken)
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		file string
		want string
	}{
		"none configured": {"", "providers add nebius --credentials FILE"},
		"missing file":    {t.TempDir() + "/nope", "providers add nebius --credentials FILE"},
		"readable by all": {loose, "chmod 600"},
		"empty":           {writeSecret(t, "\n"), "empty"},
		"two lines":       {writeSecret(t, "token one\ntoken two"), "neither service-account JSON nor a single-line IAM token"},
		"bad JSON":        {writeSecret(t, `{"subject-credentials": `), "not valid service-account JSON"},
		"wrong alg":       {writeSecret(t, `{"subject-credentials": {"alg": "HS256", "private-key": "x", "kid": "k", "iss": "s", "sub": "s"}}`), "RS256"},
		"bad key":         {writeSecret(t, `{"subject-credentials": {"alg": "RS256", "private-key": "not a key", "kid": "k", "iss": "s", "sub": "s"}}`), "not a PEM RSA private key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := newWithCreds(t, srv, c.file)
			if kindOf(err) != errkind.Auth || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (kind %s); want an auth error mentioning %q", err, kindOf(err), c.want)
			}
			if strings.Contains(err.Error(), nebiusfake.DefaultToken) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestCheckCredentialsWithToken(t *testing.T) {
	srv := startFake(t, fastFake())
	ctx := testCtx(t)
	good, err := newWithCreds(t, srv, writeSecret(t, nebiusfake.DefaultToken+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := good.CheckCredentials(ctx); err != nil {
		t.Fatalf("CheckCredentials with a valid token: %v", err)
	}
	calls := srv.Calls(nebiusfake.MethodInstanceList)
	if len(calls) != 1 || calls[0].Token != nebiusfake.DefaultToken {
		t.Fatalf("calls %+v: want one list with the token", calls)
	}
	goMod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(goMod), "github.com/nebius/gosdk v"+gosdkVersion+"\n") {
		t.Fatalf("go.mod does not pin github.com/nebius/gosdk v%s: update gosdkVersion", gosdkVersion)
	}
	if agent, want := calls[0].Agent, "cocalc-hosts nebius-gosdk/"+gosdkVersion+" ("; !strings.HasPrefix(agent, want) || !strings.Contains(agent, "; go/") {
		t.Fatalf("user agent %q: want %sOS ARCH; go/VERSION)", agent, want)
	}

	bad, err := newWithCreds(t, srv, writeSecret(t, "expired-token"))
	if err != nil {
		t.Fatal(err)
	}
	err = bad.CheckCredentials(ctx)
	if kindOf(err) != errkind.Auth || !strings.Contains(err.Error(), "providers add nebius") {
		t.Fatalf("CheckCredentials with a bad token: %v (kind %s), want auth with a hint", err, kindOf(err))
	}
	// The wrong project is an access problem too.
	other, err := New(provider.Config{Deployment: "dep", CredentialsFile: writeSecret(t, nebiusfake.DefaultToken),
		Options: testOptions(srv, map[string]string{"project_id": "project-e00someoneelse"})})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.CheckCredentials(ctx); kindOf(err) != errkind.Auth {
		t.Fatalf("CheckCredentials on another project: %v (kind %s), want auth", err, kindOf(err))
	}
}

// serviceAccountFile writes credentials in the format `nebius iam
// auth-public-key generate` produces.
func serviceAccountFile(t *testing.T, key *rsa.PrivateKey, keyID, saID string) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{"subject-credentials": map[string]string{
		"type": "JWT", "alg": "RS256", "private-key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"kid": keyID, "iss": saID, "sub": saID,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return writeSecret(t, string(b))
}

func TestServiceAccountCredentials(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	o := fastFake()
	o.ServiceAccount = &nebiusfake.ServiceAccount{ID: "serviceaccount-e00hosts", PublicKeyID: "publickey-e00k1", PublicKey: &key.PublicKey}
	srv := startFake(t, o)
	ctx := testCtx(t)

	p, err := newWithCreds(t, srv, serviceAccountFile(t, key, "publickey-e00k1", "serviceaccount-e00hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckCredentials(ctx); err != nil {
		t.Fatalf("CheckCredentials with a service account: %v", err)
	}
	if len(srv.Calls(nebiusfake.MethodTokenExchange)) == 0 {
		t.Fatal("the SDK never exchanged the service-account JWT for a token")
	}
	calls := srv.Calls(nebiusfake.MethodInstanceList)
	if len(calls) != 1 || calls[0].Token == "" || calls[0].Token == nebiusfake.DefaultToken {
		t.Fatalf("list calls %+v: want one carrying an exchanged token", calls)
	}

	// A key IAM does not know is an authentication failure.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	q, err := newWithCreds(t, srv, serviceAccountFile(t, other, "publickey-e00k1", "serviceaccount-e00hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.CheckCredentials(ctx); kindOf(err) != errkind.Auth {
		t.Fatalf("CheckCredentials with an unknown key: %v (kind %s), want auth", err, kindOf(err))
	}
}
