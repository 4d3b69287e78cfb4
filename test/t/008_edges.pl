# Edges where events used to be lost without a word: writes to the
# partitions of a tracked partitioned table (existing, created, attached,
# sub-partitions; not once detached), temporary tables, tracked tables
# dropped unnoticed, and a database no worker serves.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('edges', no_schema => 1);
my $recv = start_receiver();
# supabase bodies name the table and schema of each event
my $ep = create_endpoint($node, $recv->url('/hook'), format => "'supabase'");

# The bodies received so far, as "TYPE table id", sorted: concurrent
# deliveries may arrive in any order.
sub received
{
	my @bodies = map { json_decode($_->{body}) } $recv->deliveries('/hook');
	return join "\n", sort map {
		my $row = $_->{record} // $_->{old_record};
		"$_->{type} $_->{schema}.$_->{table} $row->{id}"
	} @bodies;
}

# Wait until every captured event is delivered: nothing queued, nothing
# pending, and the receiver saw exactly $n deliveries.
sub settle
{
	my ($n, $what) = @_;
	ok($recv->wait_for_deliveries($n, '/hook'), "$what: $n deliveries");
	ok($node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT 1 FROM webhook.queue)
		    AND NOT EXISTS (SELECT 1 FROM webhook.delivery WHERE status <> 'delivered')"),
		"$what: all delivered");
	is(scalar($recv->deliveries('/hook')), $n, "$what: no more than that");
}

$node->safe_psql('postgres', q{
	CREATE TABLE post (id int NOT NULL, channel_id text, body text) PARTITION BY RANGE (id);
	CREATE TABLE post_a PARTITION OF post FOR VALUES FROM (0) TO (100);
	SELECT webhook.track('post', 'row');
});

# Writes to an existing partition, directly.
$node->safe_psql('postgres', q{
	INSERT INTO post_a VALUES (1, 'general', 'into a');
	UPDATE post_a SET body = 'changed in a' WHERE id = 1;
	DELETE FROM post_a WHERE id = 1;
});
settle(3, 'existing partition');
is(received(), "DELETE public.post 1\nINSERT public.post 1\nUPDATE public.post 1",
	'writes to an existing partition are events of the partitioned table');

# A partition created later, one attached later (columns in another order,
# one dropped), a sub-partition; and a statement through the parent.
$node->safe_psql('postgres', q{
	CREATE TABLE post_b PARTITION OF post FOR VALUES FROM (100) TO (200);
	CREATE TABLE post_c (body text, junk int, id int NOT NULL, channel_id text);
	ALTER TABLE post_c DROP COLUMN junk;
	ALTER TABLE post ATTACH PARTITION post_c FOR VALUES FROM (200) TO (300);
	CREATE TABLE post_d PARTITION OF post FOR VALUES FROM (300) TO (400) PARTITION BY RANGE (id);
	CREATE TABLE post_d1 PARTITION OF post_d FOR VALUES FROM (300) TO (400);
});
$node->safe_psql('postgres', q{
	INSERT INTO post_b VALUES (101, 'b', 'into b');
	INSERT INTO post_c VALUES ('into c', 201, 'c');
	INSERT INTO post_d1 VALUES (301, 'd', 'into d1');
	INSERT INTO post VALUES (2, 'a', 'through the parent'), (302, 'd', 'through the parent');
});
settle(8, 'new partitions');
is(received(), join("\n", sort(
		"DELETE public.post 1", "INSERT public.post 1", "UPDATE public.post 1",
		"INSERT public.post 101", "INSERT public.post 201", "INSERT public.post 301",
		"INSERT public.post 2", "INSERT public.post 302")),
	'created, attached and sub-partitions are captured, each row once');
my ($attached) = grep { $_->{body} =~ /"id": 201/ } $recv->deliveries('/hook');
is($attached->{body},
	'{"type": "INSERT", "table": "post", "record": {"id": 201, "body": "into c", "channel_id": "c"}, "schema": "public", "old_record": null}',
	'the attached partition\'s row, with its columns by name');

# A detached partition stops being captured, and keeps no trigger.
$node->safe_psql('postgres', 'ALTER TABLE post DETACH PARTITION post_c');
is($node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO post_c VALUES ('after detach', 250, 'c');
	SELECT count(*) FROM webhook.queue WHERE created_at = now();
	COMMIT;
}), '0', 'a detached partition is not captured');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'post_c'::regclass AND NOT tgisinternal"),
	'0', 'and has no capture triggers');

# Dropping a partition is harmless.
$node->safe_psql('postgres', q{
	DROP TABLE post_b;
	INSERT INTO post VALUES (3, 'a', 'after a partition was dropped');
});
settle(9, 'after DROP of a partition');
like(received(), qr/^INSERT public.post 3$/m, 'the other partitions are still captured');

# untrack removes the triggers of every partition.
$node->safe_psql('postgres', "SELECT webhook.untrack('post')");
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_trigger WHERE tgfoid = 'webhook._capture()'::regprocedure"),
	'0', 'untrack leaves no capture trigger on any partition');

# A temporary table is refused.
my ($ret, $out, $err) = $node->psql('postgres',
	"CREATE TEMP TABLE scratch (id int PRIMARY KEY, channel_id text); SELECT webhook.track('scratch', 'row')");
isnt($ret, 0, 'track refuses a temporary table');
like($err, qr/ERROR:  cannot track temporary table scratch/, 'saying so');

# A tracked table dropped with event triggers off leaves a source behind:
# the next DDL forgets it with a warning, and breaks nothing.
$node->safe_psql('postgres', q{
	CREATE TABLE keep (id int PRIMARY KEY, channel_id text);
	CREATE TABLE doomed (id int PRIMARY KEY, channel_id text);
	SELECT webhook.track('keep', 'row');
	SELECT webhook.track('doomed', 'row');
});
my $doomed = $node->safe_psql('postgres', "SELECT 'doomed'::regclass::oid");
$node->safe_psql('postgres', q{
	SET session_replication_role = replica;
	DROP TABLE doomed;
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook.source'), '2', 'a source is left behind');
($ret, $out, $err) = $node->psql('postgres', 'ALTER TABLE keep ADD COLUMN note text');
is($ret, 0, 'ALTER TABLE of another tracked table works');
like($err, qr/WARNING:  webhook no longer tracks $doomed: the table was dropped unnoticed/,
	'and warns about the table left behind');
is($node->safe_psql('postgres', 'SELECT rel FROM webhook.source'), 'keep', 'which is forgotten');
$node->safe_psql('postgres', q{
	CREATE TABLE doomed2 (id int PRIMARY KEY, channel_id text);
	SELECT webhook.track('doomed2', 'row');
	ALTER EVENT TRIGGER webhook_on_drop DISABLE;
	DROP TABLE doomed2;
	ALTER EVENT TRIGGER webhook_on_drop ENABLE;
	CREATE TABLE fresh (id int PRIMARY KEY, channel_id text);
});
($ret, $out, $err) = $node->psql('postgres', "SELECT webhook.track('fresh', 'row')");
is($ret, 0, 'track works with a source left behind');
my @warnings = $err =~ /WARNING:  webhook no longer tracks \d+: the table was dropped unnoticed/g;
is(scalar(@warnings), 1, 'and warns once');
$node->safe_psql('postgres', "INSERT INTO keep VALUES (1, 'c', 'x'); INSERT INTO fresh VALUES (1, 'c')");
settle(11, 'after forgetting');
like(received(), qr/^INSERT public.fresh 1\nINSERT public.keep 1$/m, 'both tables are captured');

# A renamed tracked column is followed; dropping one an expression needs is
# refused with an error that names the tracking, and nothing is lost.
$node->safe_psql('postgres', q{
	CREATE TABLE room (id int PRIMARY KEY, kind text);
	INSERT INTO room VALUES (7, 'group');
	CREATE TABLE chatline (id int PRIMARY KEY, room_id int, said text);
	SELECT webhook.track('chatline', 'message', channel => $$'room-' || room_id$$,
		chat_type => '(SELECT r.kind FROM room r WHERE r.id = room_id)');
	ALTER TABLE chatline RENAME COLUMN room_id TO room;
	ALTER TABLE room RENAME COLUMN kind TO chat_kind;
	INSERT INTO chatline VALUES (1, 7, 'after the renames');
});
settle(12, 'after renaming tracked columns');
my ($line) = grep { json_decode($_->{body})->{table} eq 'chatline' } $recv->deliveries('/hook');
is_deeply([ @{ json_decode($line->{body})->{record} }{qw(room said)} ], [ 7, 'after the renames' ],
	'the renamed column is captured under its new name');
is($node->safe_psql('postgres', "SELECT channel || ' / ' || chat_type FROM webhook.source WHERE rel = 'chatline'::regclass"),
	"('room-'::text || room) / (SELECT r.chat_kind AS kind FROM public.room r WHERE (r.id = chatline.room))",
	'webhook.source shows the expressions as they read now');
is($node->safe_psql('postgres',
	q{SELECT (event->>'channel') || ' ' || (event->>'chat_type') FROM webhook.delivery
	   WHERE event->>'table' = 'chatline' AND event->'record'->>'id' = '1'}),
	'room-7 group', 'its channel and chat type are computed from the renamed columns');
($ret, $out, $err) = $node->psql('postgres', 'ALTER TABLE chatline DROP COLUMN room');
isnt($ret, 0, 'dropping a column the channel expression uses is refused');
like($err, qr/ERROR:  cannot drop table column public\.chatline\.room: the channel expression of tracked table public\.chatline uses it/,
	'with an error that names the tracking');
like($err, qr/HINT:  Call webhook\.untrack\('public\.chatline'\) first, then track the table again without it\./,
	'and says how to change it');
($ret, $out, $err) = $node->psql('postgres', 'ALTER TABLE room DROP COLUMN chat_kind');
like($err, qr/cannot drop table column public\.room\.chat_kind: the chat_type expression of tracked table public\.chatline uses it/,
	'so is dropping a column of a table the chat_type expression reads');
$node->safe_psql('postgres', "INSERT INTO chatline VALUES (2, 7, 'still captured')");
settle(13, 'after the refused drops');
$node->safe_psql('postgres', "SELECT webhook.untrack('chatline')");

# A moderated partitioned table: rows routed to a partition, and rows written
# to it directly, go through the partitioned table's hook.
$recv->set_script(paths => { '/mod' => { body => '[true, {"override_payload": {"text": "approved"}}]' } });
my $mod_ep = create_endpoint($node, $recv->url('/mod'), verify => 'false');
$node->safe_psql('postgres', qq{
	CREATE TABLE said (id int, channel_id text, payload jsonb) PARTITION BY LIST (channel_id);
	CREATE TABLE said_general PARTITION OF said FOR VALUES IN ('general');
	SELECT webhook.moderate('said', $mod_ep);
	INSERT INTO said VALUES (1, 'general', '{"text": "hi"}');
	INSERT INTO said_general VALUES (2, 'general', '{"text": "hi"}');
});
is($node->safe_psql('postgres', 'SELECT string_agg(id || payload::text, \',\' ORDER BY id) FROM said'),
	'1{"text": "approved"},2{"text": "approved"}', 'both rows were approved by the hook, with its payload');
is(scalar($recv->requests('/mod')), 2, 'one hook call each');
$node->safe_psql('postgres', "SELECT webhook.unmoderate('said')");

# A database no worker serves (webhook.databases leaves it out): CREATE
# EXTENSION warns, endpoints say why.
is($node->safe_psql('postgres', 'SELECT webhook._served() IS NULL'), 't', 'postgres is served');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET webhook.databases = 'postgres'");
$node->reload;
$node->wait_for_log(qr/webhook launcher reloaded its settings/, $log_offset);
$node->poll_query_until('postgres', "SELECT current_setting('webhook.databases') = 'postgres'")
  or die 'reload not applied';
$node->safe_psql('postgres', 'CREATE DATABASE other');
($ret, $out, $err) = $node->psql('other', 'CREATE EXTENSION webhook');
is($ret, 0, 'CREATE EXTENSION works in another database');
like($err,
	qr/WARNING:  database "other" is not in webhook.databases, so no worker serves it: events are queued but not delivered/,
	'and warns that nothing will be delivered');
like($err, qr/HINT:  Add other to webhook.databases \(or empty it\) and reload the configuration\./,
	'with a hint');
my $other_ep = $node->safe_psql('other', "SELECT id FROM webhook.create_endpoint('" . $recv->url('/other') . "')");
is($node->safe_psql('other', "SELECT state || ': ' || state_reason FROM webhook.endpoint WHERE id = $other_ep"),
	'pending: database "other" is not in webhook.databases, so no worker serves it',
	'the endpoint says why nothing happens');
$node->safe_psql('other', "SELECT webhook.verify_endpoint($other_ep)");
is($node->safe_psql('other', "SELECT state || ': ' || state_reason FROM webhook.endpoint WHERE id = $other_ep"),
	'pending: database "other" is not in webhook.databases, so no worker serves it',
	'and again after verify_endpoint');

$recv->stop;
$node->stop;
done_testing();
