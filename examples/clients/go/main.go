// CAMPAIGN.ADD and CAMPAIGN.HAS through go-redis's generic command call.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx := context.Background()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://localhost:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	added, err := rdb.Do(ctx, "CAMPAIGN.ADD", "spring-sale", "user:42").Int() // 1 if new, 0 if already there
	if err != nil {
		panic(err)
	}
	member, err := rdb.Do(ctx, "CAMPAIGN.HAS", "spring-sale", "user:42").Int() // 1 or 0
	if err != nil {
		panic(err)
	}
	fmt.Printf("added=%d member=%d\n", added, member)
}
