BEGIN TRANSACTION;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL
, note TEXT NOT NULL DEFAULT '', prev_hash TEXT NOT NULL DEFAULT '', hash TEXT NOT NULL DEFAULT '');
INSERT INTO "audit" VALUES(1,'WL-CY-001',1.79607215664491415025e+09,'tech.li','add','{"address": "北京市朝阳区建国路88号 SOHO现代城 B座 地下车库入口", "district": "朝阳区", "expected_interval_s": 300, "id": "WL-CY-001", "install": {"mount_height_mm": 2150.0}, "key": "24e124713c210001", "kind": "water_level", "latitude": 39.921, "longitude": 116.443, "model": "milesight-em500-udl", "site": "地库入口", "status": "active", "street": "建国路", "zone_class": ""}','field team 张伟','0000000000000000000000000000000000000000000000000000000000000000','d88cdc26638611d854cfaa60e2f7190281eb7f011e587e6775d70a17dc3aa3d3');
INSERT INTO "audit" VALUES(2,'BIN-HD-7',1.79607215665248799328e+09,'tech.li','add','{"address": "海淀区中关村大街1号 ''quoted'' \"double\" %_\\ back", "district": "海淀区", "expected_interval_s": 3600, "id": "BIN-HD-7", "install": {"bin_depth_mm": 1200.0}, "key": "490154203237518", "kind": "bin_fill", "latitude": 39.99, "longitude": 116.31, "model": "bin-fill-nb", "site": "", "status": "active", "street": "中关村大街", "zone_class": ""}','','d88cdc26638611d854cfaa60e2f7190281eb7f011e587e6775d70a17dc3aa3d3','3ec0fdde5df406586b800f8b945394f3e5bf6fc6d30f1d07c9b2f5d54d7f6fb4');
INSERT INTO "audit" VALUES(3,'WL-CY-001',1.796072156662667036e+09,'desk:王芳','update','{"district": ["朝阳区", "朝阳区 (CBD)"]}','re-survey','3ec0fdde5df406586b800f8b945394f3e5bf6fc6d30f1d07c9b2f5d54d7f6fb4','7a8efac1124ac93d7cab2370fa66a89acde68c808de9862b5a2592e0b6451b7f');
INSERT INTO "audit" VALUES(4,'BIN-HD-7',1796072156.66602,'tech.li','mac-key','{"mac_key": "set"}','','7a8efac1124ac93d7cab2370fa66a89acde68c808de9862b5a2592e0b6451b7f','579f45b41e66b77204667941a1f8cb7b7fcc0f9cf337c065948e41b121914d93');
INSERT INTO "audit" VALUES(5,'BIN-HD-7',1.79607215667801856998e+09,'tech.li','update','{"status": ["active", "maintenance"]}','','579f45b41e66b77204667941a1f8cb7b7fcc0f9cf337c065948e41b121914d93','4ac9336ad77353c3e171609f543cd05b02d929250012320e300b42fc47c7959b');
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    latitude REAL,
    longitude REAL,
    address TEXT NOT NULL DEFAULT '',
    district TEXT NOT NULL DEFAULT '',
    street TEXT NOT NULL DEFAULT '',
    zone_class TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    install TEXT NOT NULL DEFAULT '{}',
    expected_interval_s INTEGER NOT NULL DEFAULT 300,
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
, row_hash TEXT NOT NULL DEFAULT '');
INSERT INTO "devices" VALUES('WL-CY-001','24e124713c210001','milesight-em500-udl','water_level',39.921,116.443,'北京市朝阳区建国路88号 SOHO现代城 B座 地下车库入口','朝阳区 (CBD)','建国路','','地库入口','{"mount_height_mm": 2150.0}',300,'active',1.79607215664424252508e+09,1.79607215666260290141e+09,'ec999895a15d570791629c4296becf39f35e80b902ea158b6fac389a0b18d917');
INSERT INTO "devices" VALUES('BIN-HD-7','490154203237518','bin-fill-nb','bin_fill',39.99,116.31,'海淀区中关村大街1号 ''quoted'' "double" %_\ back','海淀区','中关村大街','','','{"bin_depth_mm": 1200.0}',3600,'maintenance',1.79607215665222787852e+09,1.79607215667794680594e+09,'2a77f7e86bd22115aaa94529f81c683fcf6050e1ac4596194a65d117ec064a37');
CREATE TABLE mac_keys (device_id TEXT PRIMARY KEY, key TEXT NOT NULL);
INSERT INTO "mac_keys" VALUES('BIN-HD-7','c6694b9187d2654e7e6e43b34d3e2c77');
CREATE INDEX audit_device ON audit(device_id, seq);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit',5);
COMMIT;
