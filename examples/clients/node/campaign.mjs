// CAMPAIGN.ADD and CAMPAIGN.HAS through node-redis's generic command call.
import { createClient } from 'redis';

const client = await createClient({ url: process.env.REDIS_URL ?? 'redis://localhost:6379' }).connect();
const added = await client.sendCommand(['CAMPAIGN.ADD', 'spring-sale', 'user:42']); // 1 if new, 0 if already there
const member = await client.sendCommand(['CAMPAIGN.HAS', 'spring-sale', 'user:42']); // 1 or 0
console.log(`added=${added} member=${member}`);
await client.close();
