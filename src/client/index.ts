export * from './shardgate-client.js';
export * from './follow-handoffs.js';
