// Not run here: no Go module proxy is reachable from these machines (see
// README, "Client libraries"). With one: go mod tidy && go run .
module example.com/campaign-client

go 1.24
