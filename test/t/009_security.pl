# The privilege model (DESIGN section 9, README "Security model"): user code
# runs with its owner's rights, never as a superuser who did not write it.
# A role "app", not superuser, owns the chat tables; a superuser tracks them
# and manages endpoints. Each way app could make webhook run its code as a
# superuser is tried, and app must still not be superuser afterwards.
use strict;
use warnings;
use File::Basename qw(dirname);
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

# Only postgres is served: the queue of the database restored below is read.
my $node = webhook_node('security', no_schema => 1, conf => "webhook.databases = 'postgres'\n");
my $recv = start_receiver(paths => { '/broken' => { status => 200 } });

sub su { return $node->safe_psql('postgres', shift); }

# Run SQL as a role; returns (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', "SET ROLE $role;\n$sql",
		stdout => \$out, stderr => \$err, on_error_stop => 1);
	return ($rc, $out, $err);
}

sub app_is_not_superuser
{
	my ($what) = @_;
	is(su("SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"), 'f',
		"$what: app is still not superuser");
}

su(q{
	CREATE ROLE app LOGIN;
	GRANT CREATE ON SCHEMA public TO app;
	-- where app's code says who it runs as
	CREATE TABLE seen (what text, who text, note text);
	GRANT INSERT ON seen TO app;
	-- the channel table of a chat: chat_type lives there, as in slackchat
	CREATE SCHEMA chat AUTHORIZATION app;
	SET ROLE app;
	CREATE TABLE chat.channel (id text PRIMARY KEY, chat_type text NOT NULL);
	INSERT INTO chat.channel VALUES ('general', 'group'), ('dm-1', 'private');
	CREATE TABLE chat.message (id int PRIMARY KEY, channel_id text NOT NULL, content text);
	CREATE FUNCTION public.app_chan(c text) RETURNS text LANGUAGE sql AS 'SELECT c';
	RESET ROLE;
});

# A superuser tracks app's table; the expressions read chat.channel by its
# unqualified name, on the caller's search_path.
su(q{
	SET search_path = chat, public;
	SELECT webhook.track('message', channel => 'public.app_chan(channel_id)',
		chat_type => '(SELECT c.chat_type FROM channel c WHERE c.id = channel_id)');
});
like(su("SELECT chat_type FROM webhook.source WHERE rel = 'chat.message'::regclass"),
	qr/FROM chat\.channel c/, 'the tracked expression is kept schema-qualified');

my $ep = create_endpoint($node, $recv->url('/hooks'));

# The unqualified channel table, read as the caller's search_path had it,
# whatever the writer's path: a decoy channel table on another path is not read.
su(q{
	CREATE SCHEMA decoy;
	CREATE TABLE decoy.channel (id text PRIMARY KEY, chat_type text);
	INSERT INTO decoy.channel VALUES ('general', 'decoy');
	GRANT USAGE ON SCHEMA decoy TO app;
	GRANT SELECT ON decoy.channel TO app;
});
my ($rc, $out, $err) = as_role('app', q{
	SET search_path = decoy, public;
	INSERT INTO chat.message VALUES (1, 'general', 'hello');
});
is($rc, 0, 'app writes its tracked table with no rights on webhook.*') or diag($err);
ok($recv->wait_for_deliveries(1, '/hooks'), 'the message is delivered');
my ($first) = grep { $_->{body} =~ /"hello"/ } $recv->deliveries('/hooks');
is(json_decode($first->{body})->{chat_type}, 'group',
	'chat_type read from chat.channel, not the decoy on the writer\'s path');

#
# 1. A cast on a column type, called by to_jsonb while the row is serialized.
#
($rc, $out, $err) = as_role('app', q{
	CREATE TYPE public.mood AS ENUM ('happy');
	CREATE FUNCTION public.evil(m public.mood) RETURNS json LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('cast', current_user, NULL);
	    EXECUTE 'ALTER ROLE app SUPERUSER';
	    RETURN '"escalated"';
	END $$;
	CREATE CAST (public.mood AS json) WITH FUNCTION public.evil(public.mood);
	ALTER TABLE chat.message ADD COLUMN m public.mood;
});
is($rc, 0, 'app adds a column with its own cast to json') or diag($err);
($rc, $out, $err) = as_role('app', q{INSERT INTO chat.message VALUES (2, 'general', 'cast', 'happy')});
isnt($rc, 0, 'the insert that runs the cast fails');
like($err, qr/permission denied to alter role|must be superuser/, '... because the cast runs as app');
app_is_not_superuser('cast to json');
is(su("SELECT count(*) FROM chat.message WHERE id = 2"), '0', 'the row was not written');
is(su("SELECT count(*) FROM seen WHERE what = 'cast'"), '0', 'nor what the cast wrote (rolled back)');
# A cast that behaves runs as app, restricted: it cannot change roles either.
as_role('app', q{
	CREATE OR REPLACE FUNCTION public.evil(m public.mood) RETURNS json LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('cast', current_user, NULL);
	    RETURN '"' || m::text || '"';
	END $$;
});
($rc, $out, $err) = as_role('app', q{INSERT INTO chat.message VALUES (3, 'general', 'cast ok', 'happy')});
is($rc, 0, 'a harmless cast works') or diag($err);
is(su("SELECT who FROM seen WHERE what = 'cast'"), 'app', 'the cast ran as the table owner');

#
# 2. A function in a tracked expression, replaced by its owner.
#
as_role('app', q{
	CREATE OR REPLACE FUNCTION public.app_chan(c text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('channel', current_user,
	        current_setting('search_path'));
	    BEGIN
	        EXECUTE 'ALTER ROLE app SUPERUSER';
	    EXCEPTION WHEN OTHERS THEN
	        INSERT INTO public.seen VALUES ('channel escalation', current_user, SQLERRM);
	    END;
	    RETURN c;
	END $$;
});
($rc, $out, $err) = as_role('app', q{INSERT INTO chat.message VALUES (4, 'general', 'expr')});
is($rc, 0, 'the insert runs app\'s channel function') or diag($err);
app_is_not_superuser('tracked expression function');
is(su("SELECT who || ' ' || note FROM seen WHERE what = 'channel'"), 'app pg_catalog, pg_temp',
	'the tracked expression ran as the table owner, with a safe search_path');
like(su("SELECT note FROM seen WHERE what = 'channel escalation'"),
	qr/permission denied|must be superuser/, 'its ALTER ROLE was refused');
is(su("SELECT count(*) FROM webhook.queue q WHERE q.record->>'id' = '4'")
	  + su("SELECT count(*) FROM webhook.delivery d WHERE d.event->'record'->>'id' = '4'") > 0 ? 1 : 0,
	1, 'and its event was queued');

#
# 3. on_response and format functions: registered by a superuser, replaced by app.
#
su(q{
	GRANT USAGE ON SCHEMA webhook TO app;
	CREATE FUNCTION public.app_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
	CREATE FUNCTION public.app_reply(d webhook.delivery, status integer, headers jsonb, body text)
	    RETURNS void LANGUAGE sql AS 'SELECT';
	ALTER FUNCTION public.app_format(jsonb, webhook.endpoint) OWNER TO app;
	ALTER FUNCTION public.app_reply(webhook.delivery, integer, jsonb, text) OWNER TO app;
});
my $ep_user = create_endpoint($node, $recv->url('/user'), format => "'public.app_format'",
	on_response => "'public.app_reply(webhook.delivery, integer, jsonb, text)'",
	events => "'{order.paid}'");
($rc, $out, $err) = as_role('app', q{
	CREATE OR REPLACE FUNCTION public.app_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('format', current_user, NULL);
	    BEGIN
	        EXECUTE 'ALTER ROLE app SUPERUSER';
	    EXCEPTION WHEN OTHERS THEN
	        INSERT INTO public.seen VALUES ('format escalation', current_user, SQLERRM);
	    END;
	    RETURN jsonb_build_object('by', current_user::text, 'event', event->>'type',
	                              'secret_visible', endpoint.secret IS NOT NULL);
	END $$;
	CREATE OR REPLACE FUNCTION public.app_reply(d webhook.delivery, status integer, headers jsonb, body text)
	RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('on_response', current_user, status::text);
	    EXECUTE 'ALTER ROLE app SUPERUSER';
	END $$;
});
is($rc, 0, 'app replaces the bodies of its format and on_response functions') or diag($err);
su("SELECT webhook.emit('order.paid', '{\"order\": 7}')");
ok($recv->wait_for_deliveries(1, '/user'), 'the event rendered by app\'s format arrives');
my ($user_req) = $recv->deliveries('/user');
is($user_req->{body}, '{"by": "app", "event": "order.paid", "secret_visible": true}',
	'the body is what the format function returned, run as its owner');
ok($node->poll_query_until('postgres',
	"SELECT last_error IS NOT NULL FROM webhook.delivery WHERE endpoint_id = $ep_user"),
	'the on_response error is recorded');
like(su("SELECT last_error FROM webhook.delivery WHERE endpoint_id = $ep_user"),
	qr/^on_response app_reply failed: (permission denied|must be superuser)/,
	'on_response ran as app and could not alter the role');
is(su("SELECT status FROM webhook.delivery WHERE endpoint_id = $ep_user"), 'delivered',
	'the delivery itself stays delivered');
app_is_not_superuser('format and on_response functions');
is(su("SELECT string_agg(what || '=' || who, ',' ORDER BY what) FROM seen WHERE what IN ('format', 'on_response')"),
	'format=app', 'the format function ran as app (on_response\'s row rolled back with its error)');
like(su("SELECT note FROM seen WHERE what = 'format escalation'"),
	qr/permission denied|must be superuser/, 'the format function\'s ALTER ROLE was refused');

# on_response that succeeds writes as its owner.
as_role('app', q{
	CREATE OR REPLACE FUNCTION public.app_reply(d webhook.delivery, status integer, headers jsonb, body text)
	RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	    INSERT INTO public.seen VALUES ('on_response', current_user, status::text);
	END $$;
});
su("SELECT webhook.emit('order.paid', '{\"order\": 8}')");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM seen WHERE what = 'on_response'"),
	'on_response ran');
is(su("SELECT who || ' ' || note FROM seen WHERE what = 'on_response'"), 'app 200',
	'on_response ran as its owner and saw the status');

#
# A format function that fails or returns NULL sends nothing: the delivery is
# failed with the function's error, and redeliver works once it is fixed.
#
su(q{
	CREATE FUNCTION public.broken_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no format for %', event->>'type'; END $$;
	CREATE FUNCTION public.null_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE sql AS 'SELECT NULL::jsonb';
});
my $ep_broken = create_endpoint($node, $recv->url('/broken'), format => "'public.broken_format'",
	events => "'{order.broken}'");
my $ep_null = create_endpoint($node, $recv->url('/null'), format => "'public.null_format'",
	events => "'{order.broken}'");
su("SELECT webhook.emit('order.broken', '{}')");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM webhook.delivery WHERE endpoint_id IN ($ep_broken, $ep_null) AND status = 'failed'"),
	'both deliveries failed');
is(su("SELECT attempts || ' ' || last_error FROM webhook.delivery WHERE endpoint_id = $ep_broken"),
	'1 format function public.broken_format failed: no format for order.broken',
	'the function\'s error is the delivery\'s last_error');
is(su("SELECT last_error FROM webhook.delivery WHERE endpoint_id = $ep_null"),
	'format function public.null_format returned NULL', 'a NULL body is an error too');
is(scalar($recv->deliveries('/broken')) + scalar($recv->deliveries('/null')), 0,
	'nothing was sent for them');
su(q{CREATE OR REPLACE FUNCTION public.broken_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE sql AS $$ SELECT '{"fixed": true}'::jsonb $$});
su("SELECT webhook.redeliver(id) FROM webhook.delivery WHERE endpoint_id = $ep_broken");
ok($recv->wait_for_deliveries(1, '/broken'), 'redelivered once the function is fixed');
is(($recv->deliveries('/broken'))[0]->{body}, '{"fixed": true}', 'with the fixed body');

# A format function that does not return within webhook.timeout fails its
# delivery: the worker stops it there, so it holds up the others no longer.
su(q{CREATE FUNCTION public.slow_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE sql AS $$ SELECT pg_sleep(600); SELECT '{}'::jsonb $$});
my $ep_slow = create_endpoint($node, $recv->url('/slow'), format => "'public.slow_format'",
	events => "'{order.slow}'");
su("SELECT webhook.emit('order.slow', '{}')");
ok($node->poll_query_until('postgres',
	"SELECT status = 'failed' FROM webhook.delivery WHERE endpoint_id = $ep_slow"),
	'a format function that runs too long fails its delivery');
like(su("SELECT last_error FROM webhook.delivery WHERE endpoint_id = $ep_slow"),
	qr/^format function public\.slow_format failed: canceling statement due to statement timeout$/,
	'with the time limit as the error');
is(scalar($recv->deliveries('/slow')), 0, 'and nothing is sent');

#
# The grants of the README, exactly as written there.
#
my $readme = slurp_file(dirname(__FILE__) . '/../../README.md');
my ($grants) = $readme =~ /<!-- grants -->\s*```sql\n(.*?)```/s;
ok(defined $grants, 'README has the grants block') or BAIL_OUT('no grants in README');
su(q{
	CREATE ROLE app_writer;
	CREATE ROLE app_emitter;
	CREATE ROLE webhook_admin;
	CREATE ROLE webhook_monitor;
	GRANT USAGE ON SCHEMA chat TO app_writer;
	GRANT INSERT, UPDATE, DELETE ON chat.message TO app_writer;
});

# Less than the grants: refused with 42501.
sub sqlstate_as
{
	my ($role, $sql) = @_;
	my ($rc2, $o, $e) = as_role($role, "\\set VERBOSITY verbose\n$sql");
	return $rc2 == 0 ? 'ok' : ($e =~ /ERROR:\s+([0-9A-Z]{5})/)[0];
}
is(sqlstate_as('app_emitter', "SELECT webhook.emit('x', '{}')"), '42501',
	'an emitter without the grants is refused');
is(sqlstate_as('webhook_admin', "SELECT webhook.create_endpoint('http://127.0.0.1:1/', verify => false)"),
	'42501', 'an admin without the grants is refused');

su($grants);
is(sqlstate_as('app_writer', "INSERT INTO chat.message VALUES (10, 'general', 'from writer')"), 'ok',
	'a writer needs nothing on webhook.*');
is(sqlstate_as('app_emitter', "SELECT webhook.emit('order.paid', '{\"order\": 9}')"), 'ok',
	'an emitter with the README\'s grants emits');
is(sqlstate_as('app_emitter', "SELECT * FROM webhook.endpoint"), '42501',
	'an emitter still cannot read endpoints');
my $admin_url = $recv->url('/admin');
my $admin_sql = qq{
	SELECT id AS ep FROM webhook.create_endpoint('$admin_url', name => 'by-admin') \\gset
	SELECT webhook.alter_endpoint(:ep, headers => '{"X-Team": "ops"}') IS NOT NULL;
	SELECT webhook.disable_endpoint(:ep, 'maintenance');
	SELECT webhook.enable_endpoint(:ep);
	SELECT webhook.verify_endpoint(:ep);
	SELECT webhook.redeliver((SELECT min(id) FROM webhook.delivery WHERE status <> 'pending'));
	SELECT webhook.drop_endpoint(:ep);
};
is(sqlstate_as('webhook_admin', $admin_sql), 'ok', 'an admin with the README\'s grants manages endpoints');
is(sqlstate_as('webhook_admin', "SELECT webhook.track('chat.channel', 'row')"), '42501',
	'an admin cannot track tables');
is(sqlstate_as('webhook_admin', "SELECT webhook._deparse_expr('{CONST}', 'chat.message', NULL)"), '42501',
	'nor have node trees read');
is(sqlstate_as('webhook_admin', "SELECT webhook._check_capture(1)"), '42501',
	'nor run capture statements');
# An admin may only name functions it may execute.
su(q{
	CREATE FUNCTION public.private_format(event jsonb, endpoint webhook.endpoint) RETURNS jsonb
	    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	REVOKE ALL ON FUNCTION public.private_format(jsonb, webhook.endpoint) FROM PUBLIC;
});
is(sqlstate_as('webhook_admin',
	"SELECT webhook.create_endpoint('http://127.0.0.1:1/', format => 'public.private_format', verify => false)"),
	'42501', 'an admin cannot name a format function it may not execute');
# A capture trigger of app's own, naming the tracking of another table, is refused.
su("GRANT EXECUTE ON FUNCTION webhook._capture() TO app");
my $src = su("SELECT id FROM webhook.source WHERE rel = 'chat.message'::regclass");
($rc, $out, $err) = as_role('app', qq{
	CREATE TABLE public.spoof (id int, channel_id text, content text);
	CREATE TRIGGER spoof AFTER INSERT ON public.spoof REFERENCING NEW TABLE AS webhook_new
	    FOR EACH STATEMENT EXECUTE FUNCTION webhook._capture('$src');
	INSERT INTO public.spoof VALUES (1, 'general', 'spoofed');
});
like($err, qr/names the tracking of another table/, 'a trigger naming another table\'s tracking is refused');
is(su("SELECT count(*) FROM webhook.queue WHERE record->>'content' = 'spoofed'")
	+ su("SELECT count(*) FROM webhook.delivery WHERE event->'record'->>'content' = 'spoofed'"),
	0, 'and queues nothing');
app_is_not_superuser('everything');

#
# Node trees name objects by OID: in a database restored from a dump they are
# parsed again from the qualified SQL kept beside them.
#
my $dump = PostgreSQL::Test::Utils::tempdir() . '/dump.sql';
PostgreSQL::Test::Utils::system_or_bail('pg_dump', '-d', $node->connstr('postgres'), '-f', $dump);
su('CREATE DATABASE restored');
PostgreSQL::Test::Utils::system_or_bail('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
	'-d', $node->connstr('restored'), '-f', $dump);
sub restored { return $node->safe_psql('restored', shift); }
restored(q{
	DELETE FROM webhook.queue;
	INSERT INTO chat.message VALUES (100, 'general', 'restored');
	ALTER TABLE chat.message RENAME COLUMN channel_id TO room;
	INSERT INTO chat.message VALUES (101, 'dm-1', 'renamed after the restore');
});
is(restored(q{SELECT string_agg(channel || ' ' || chat_type || ' ' || (record->>'id'), ', ' ORDER BY id) FROM webhook.queue}),
	'general group 100, dm-1 private 101',
	'a restored database captures, and follows a rename');
is(restored(q{SELECT channel || ' / ' || chat_type FROM webhook.source WHERE rel = 'chat.message'::regclass}),
	'public.app_chan(room) / (SELECT c.chat_type FROM chat.channel c WHERE (c.id = message.room))',
	'its expressions name the restored objects');

done_testing();
