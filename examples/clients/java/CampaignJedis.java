// CAMPAIGN.ADD and CAMPAIGN.HAS through Jedis's generic command call (Jedis 7.2 or later).
import redis.clients.jedis.RedisClient;
import redis.clients.jedis.commands.ProtocolCommand;
import redis.clients.jedis.util.SafeEncoder;

public class CampaignJedis {
    static final ProtocolCommand ADD = () -> SafeEncoder.encode("CAMPAIGN.ADD");
    static final ProtocolCommand HAS = () -> SafeEncoder.encode("CAMPAIGN.HAS");

    public static void main(String[] args) {
        String url = System.getenv().getOrDefault("REDIS_URL", "redis://localhost:6379");
        try (RedisClient jedis = RedisClient.create(url)) {
            Object added = jedis.sendCommand(ADD, "spring-sale", "user:42"); // Long: 1 if new, 0 if already there
            Object member = jedis.sendCommand(HAS, "spring-sale", "user:42"); // Long: 1 or 0
            System.out.println("added=" + added + " member=" + member);
        }
    }
}
