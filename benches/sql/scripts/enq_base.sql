\set uid random(1, 1000000)
INSERT INTO ins_bench (user_id, type, business_id, payload) VALUES (:uid, 'email', :uid, '{"k":"v"}');
