package nebius

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nebius/gosdk/auth"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// credentials reads cfg.CredentialsFile (0600, via secrets.Read) and turns
// it into a credential. Two forms are accepted:
//
//   - a service-account credentials file, the JSON that `nebius iam
//     auth-public-key generate` writes: {"subject-credentials": {"alg":
//     "RS256", "private-key": PEM, "kid": public key id, "iss" and "sub":
//     service account id}}. The SDK signs a short JWT with the key and
//     client exchanges it for IAM tokens, refreshing them in the background.
//     This is the form to use for a long-running control plane.
//   - an IAM access token on one line (`nebius iam get-access-token`). It
//     expires after hours; fine for trying things out.
//
// Nothing is read from environment variables or the Nebius CLI profile.
func credentials(path string) (credential, error) {
	const op = "credentials"
	addHint := "run `cocalc-hosts providers add " + Name + " --credentials FILE` with a Nebius service-account credentials JSON file or an IAM token file"
	if path == "" {
		return credential{}, provider.Errorf(errkind.Auth, Name, op, "no credentials file is configured; %s", addHint)
	}
	raw, err := secrets.Read(path)
	if err != nil {
		return credential{}, provider.Errorf(errkind.Auth, Name, op, "%v; %s", err, addHint)
	}
	if len(raw) == 0 {
		return credential{}, provider.Errorf(errkind.Auth, Name, op, "credentials file %s is empty; %s", path, addHint)
	}
	if raw[0] == '{' {
		sa, err := parseServiceAccount(raw)
		if err != nil {
			return credential{}, provider.Errorf(errkind.Auth, Name, op, "credentials file %s: %v; %s", path, err, addHint)
		}
		return credential{sa: &sa}, nil
	}
	token := string(raw)
	if strings.ContainsAny(token, " \t\r\n") {
		return credential{}, provider.Errorf(errkind.Auth, Name, op,
			"credentials file %s is neither service-account JSON nor a single-line IAM token; %s", path, addHint)
	}
	return credential{token: token}, nil
}

// parseServiceAccount decodes a service-account credentials file. The
// checks mirror gosdk's own file parser, which we cannot use because it
// reads the file itself, without our 0600 check.
func parseServiceAccount(raw []byte) (auth.ServiceAccount, error) {
	var f auth.ServiceAccountCredentials
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&f); err != nil {
		return auth.ServiceAccount{}, fmt.Errorf("not valid service-account JSON: %v", err)
	}
	c := f.SubjectCredentials
	switch {
	case c.Type != "" && c.Type != "JWT":
		return auth.ServiceAccount{}, fmt.Errorf(`subject-credentials.type is %q; the only supported value is "JWT"`, c.Type)
	case c.Alg != "RS256":
		return auth.ServiceAccount{}, fmt.Errorf(`subject-credentials.alg is %q; the only supported value is "RS256"`, c.Alg)
	case c.Subject == "" || c.Issuer != c.Subject:
		return auth.ServiceAccount{}, fmt.Errorf("subject-credentials.iss and .sub must both be the service account id")
	case c.KeyID == "":
		return auth.ServiceAccount{}, fmt.Errorf("subject-credentials.kid (the public key id) is missing")
	case c.PrivateKey == "":
		return auth.ServiceAccount{}, fmt.Errorf("subject-credentials.private-key is missing")
	}
	sa, err := auth.NewPrivateKeyParser([]byte(c.PrivateKey), c.KeyID, c.Subject).ServiceAccount(context.Background())
	if err != nil {
		return auth.ServiceAccount{}, fmt.Errorf("subject-credentials.private-key is not a PEM RSA private key: %v", err)
	}
	return sa, nil
}
