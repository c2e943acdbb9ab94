export * from './shardgate-client.js';
