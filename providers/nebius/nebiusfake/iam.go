package nebiusfake

import (
	"context"
	"crypto/rsa"
	"fmt"

	"github.com/golang-jwt/jwt/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	iam "github.com/nebius/gosdk/proto/nebius/iam/v1"
)

// ServiceAccount is the service account whose signed JWTs the fake's
// TokenExchangeService turns into IAM tokens, as Nebius IAM does for a
// service-account credentials file.
type ServiceAccount struct {
	ID          string // "serviceaccount-..."
	PublicKeyID string // "publickey-..."
	PublicKey   *rsa.PublicKey
}

type tokenExchangeService struct {
	iam.UnimplementedTokenExchangeServiceServer
	s *Server
}

// Exchange checks a self-signed service-account JWT and issues a bearer
// token the fake then accepts.
func (x *tokenExchangeService) Exchange(_ context.Context, req *iam.ExchangeTokenRequest) (*iam.CreateTokenResponse, error) {
	if req.GetGrantType() != "urn:ietf:params:oauth:grant-type:token-exchange" {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported grant_type %q", req.GetGrantType())
	}
	if req.GetSubjectTokenType() != "urn:ietf:params:oauth:token-type:jwt" {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported subject_token_type %q", req.GetSubjectTokenType())
	}
	sa := x.s.opts.ServiceAccount
	if sa == nil {
		return nil, status.Error(codes.Unauthenticated, "unknown service account")
	}
	claims := &jwt.RegisteredClaims{}
	tok, err := jwt.ParseWithClaims(req.GetSubjectToken(), claims, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() != "RS256" {
			return nil, fmt.Errorf("unexpected signing method %s", t.Method.Alg())
		}
		if kid, _ := t.Header["kid"].(string); kid != sa.PublicKeyID {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return sa.PublicKey, nil
	})
	if err != nil || !tok.Valid {
		return nil, status.Errorf(codes.Unauthenticated, "invalid subject token: %v", err)
	}
	if claims.Issuer != sa.ID || claims.Subject != sa.ID {
		return nil, status.Errorf(codes.Unauthenticated, "subject token is for %q, not a known service account", claims.Subject)
	}
	access := newID("v1.fakeiamtoken")
	x.s.tokens[access] = true
	return &iam.CreateTokenResponse{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: 3600,
		IssuedTokenType: "urn:ietf:params:oauth:token-type:access_token",
	}, nil
}
